"""Where the S3 store's credentials come from (blobs/credentials.py): settings, then the
environment, then the shared credentials file, then botocore's chain; a clear error when none
has them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from imagegate.blobs.credentials import CredentialSource, SdkCredentials, find_credentials
from imagegate.blobs.sigv4 import Credentials
from imagegate.errors import ConfigError

ENV = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env-secret",
       "AWS_SESSION_TOKEN": "env-token"}


def found(source: CredentialSource) -> Credentials:
    return asyncio.run(source.current())


def shared_file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "credentials"
    path.write_text(text)
    return {"AWS_SHARED_CREDENTIALS_FILE": str(path)}


def test_settings_come_first() -> None:
    assert found(find_credentials("AKIDSET", "set-secret", ENV)) == \
        Credentials("AKIDSET", "set-secret")


def test_then_the_environment_with_its_session_token(tmp_path: Path) -> None:
    env = {**ENV, **shared_file(tmp_path, "[default]\naws_access_key_id = F\n"
                                          "aws_secret_access_key = f\n")}
    assert found(find_credentials("", "", env)) == \
        Credentials("AKIDENV", "env-secret", "env-token")


def test_then_the_shared_file_in_the_chosen_profile(tmp_path: Path) -> None:
    env = shared_file(tmp_path, "[default]\naws_access_key_id = AKIDDEF\n"
                                "aws_secret_access_key = def-secret\n"
                                "[prod]\naws_access_key_id = AKIDPROD\n"
                                "aws_secret_access_key = prod-secret\n"
                                "aws_session_token = prod-token\n")
    assert found(find_credentials("", "", env)) == Credentials("AKIDDEF", "def-secret")
    assert found(find_credentials("", "", {**env, "AWS_PROFILE": "prod"})) == \
        Credentials("AKIDPROD", "prod-secret", "prod-token")


def test_a_profile_the_file_lacks_is_named(tmp_path: Path) -> None:
    env = {**shared_file(tmp_path, "[default]\n"), "AWS_PROFILE": "staging"}
    with pytest.raises(ConfigError, match="AWS_PROFILE names profile staging"):
        find_credentials("", "", env)


def test_a_profile_without_both_keys_is_named(tmp_path: Path) -> None:
    env = shared_file(tmp_path, "[default]\naws_access_key_id = AKID\n")
    with pytest.raises(ConfigError, match=r"profile default of .* needs aws_access_key_id and "
                                          r"aws_secret_access_key"):
        find_credentials("", "", env)


def test_no_credentials_anywhere_says_what_to_set(tmp_path: Path) -> None:
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent"),
           "AWS_ACCESS_KEY_ID": "half-set"}
    with pytest.raises(ConfigError, match="need credentials: set s3_access_key_id and "
                                          "s3_secret_access_key, or AWS_ACCESS_KEY_ID") as caught:
        find_credentials("", "", env, sdk=False)
    assert "install imagegate[aws]" in str(caught.value)


def test_one_of_the_two_settings_alone_is_refused() -> None:
    with pytest.raises(ConfigError, match="go together"):
        find_credentials("AKID", "", ENV)


def test_the_rest_of_the_chain_comes_from_botocore(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A link only botocore has, ``credential_process`` in ~/.aws/config, with temporary keys."""
    answer = {"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "process-secret",
              "SessionToken": "process-token", "Expiration": "2999-01-01T00:00:00Z"}
    script = tmp_path / "credentials.py"
    script.write_text(f"print({json.dumps(json.dumps(answer))})\n")
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {script}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    source = find_credentials("", "")
    assert isinstance(source, SdkCredentials) and source.method == "custom-process"
    assert found(source) == Credentials("AKIDPROCESS", "process-secret", "process-token")
