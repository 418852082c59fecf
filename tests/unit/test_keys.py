"""API keys: minting, hashing and reading the Authorization header (keys.py)."""

from __future__ import annotations

import hashlib
import re

import pytest

from imagegate.keys import PREFIX, bearer_token, hash_key, mint_key

KEY_SHAPE = re.compile(r"ig_([0-9a-f]{12})_([A-Za-z0-9_-]{32})")


def test_minted_key_reads_prefix_key_id_and_secret() -> None:
    key = mint_key()
    match = KEY_SHAPE.fullmatch(key.plain)
    assert match is not None, key.plain
    assert key.plain.startswith(PREFIX)
    assert match.group(1) == key.key_id


def test_minted_key_id_is_public_and_separate_from_the_secret() -> None:
    key = mint_key()
    assert key.key_id not in key.plain.removeprefix(f"{PREFIX}{key.key_id}_")
    assert key.key_id not in key.hash


def test_stored_hash_is_the_sha256_of_the_plain_key() -> None:
    key = mint_key()
    assert key.hash == hashlib.sha256(key.plain.encode()).hexdigest()
    assert key.hash == hash_key(key.plain)
    assert re.fullmatch(r"[0-9a-f]{64}", key.hash)
    assert key.plain not in key.hash


def test_hash_key_is_deterministic_and_tells_keys_apart() -> None:
    assert hash_key("ig_abc_def") == hash_key("ig_abc_def")
    assert hash_key("ig_abc_def") != hash_key("ig_abc_deg")


def test_minted_keys_are_unique() -> None:
    keys = [mint_key() for _ in range(500)]
    assert len({k.plain for k in keys}) == 500
    assert len({k.key_id for k in keys}) == 500
    assert len({k.hash for k in keys}) == 500


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer ig_abc_secret", "ig_abc_secret"),
    ("bearer ig_abc_secret", "ig_abc_secret"),
    ("BEARER ig_abc_secret", "ig_abc_secret"),
    ("Bearer   ig_abc_secret", "ig_abc_secret"),
    ("  Bearer ig_abc_secret  ", "ig_abc_secret"),
    ("Bearer ig_a-b_c", "ig_a-b_c"),
])
def test_bearer_token_reads_the_token(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [
    None,
    "",
    "   ",
    "Bearer",
    "Bearer ",
    "Bearer    ",
    "Basic dXNlcjpwYXNz",
    "Token ig_abc_secret",
    "ig_abc_secret",
    "Bearer ig_abc secret",
    "Bearerig_abc_secret",
])
def test_malformed_authorization_header_gives_no_token(header: str | None) -> None:
    assert bearer_token(header) is None


def test_key_cache_keeps_entries_for_their_ttl_only() -> None:
    from imagegate.keys import KeyCache

    cache: KeyCache[str] = KeyCache(1.0, max_entries=2)
    cache.put("h1", "key-1", now=10.0)
    assert cache.get("h1", now=10.5) == "key-1"
    assert cache.get("h1", now=11.0) is None
    assert cache.get("unknown", now=10.0) is None
    cache.put("h2", "key-2", now=20.0)
    cache.put("h3", "key-3", now=20.0)  # full: expired entries go first
    assert cache.get("h2", now=20.1) == "key-2" and cache.get("h3", now=20.1) == "key-3"


def test_key_cache_with_no_ttl_keeps_nothing() -> None:
    from imagegate.keys import KeyCache

    cache: KeyCache[str] = KeyCache(0)
    cache.put("h1", "key-1", now=0.0)
    assert cache.get("h1", now=0.0) is None
