"""Where the S3 blob store's credentials come from, first found wins:

1. the settings ``s3_access_key_id`` and ``s3_secret_access_key`` (both or neither);
2. the environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and, for temporary
   credentials, ``AWS_SESSION_TOKEN``;
3. the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials``),
   profile ``AWS_PROFILE`` (else ``default``): ``aws_access_key_id``,
   ``aws_secret_access_key``, ``aws_session_token``;
4. where botocore is installed (``pip install 'imagegate[aws]'``), the rest of the AWS SDKs'
   standard chain through it: ``credential_process`` and SSO profiles of ``~/.aws/config``,
   EKS web identity, ECS task roles, EC2 instance profiles; botocore refreshes these
   temporary credentials before they expire.

The first three are static and read once, at start; so is the choice of link. None found is a
``ConfigError`` that says what to set.
"""

from __future__ import annotations

import asyncio
import configparser
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from imagegate.blobs.sigv4 import Credentials
from imagegate.errors import ConfigError, StorageUnavailable

__all__ = ["CredentialSource", "SdkCredentials", "StaticCredentials", "find_credentials"]


class CredentialSource(Protocol):
    async def current(self) -> Credentials:
        """The credentials to sign the next request with."""
        ...


@dataclass(frozen=True)
class StaticCredentials:
    credentials: Credentials

    async def current(self) -> Credentials:
        return self.credentials


class SdkCredentials:
    """Credentials botocore's chain found; botocore refreshes temporary ones before they
    expire (a refresh may call a metadata endpoint, so it runs off the event loop)."""

    def __init__(self, found: Any, method: str) -> None:
        self.found = found
        self.method = method  # botocore's name for the link, such as iam-role

    async def current(self) -> Credentials:
        try:
            frozen = await asyncio.to_thread(self.found.get_frozen_credentials)
        except Exception as exc:  # botocore's errors, translated at the seam
            raise StorageUnavailable(f"S3 credentials ({self.method}) could not be refreshed: "
                                     f"{type(exc).__name__}: {exc}") from exc
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token or "")


def find_credentials(access_key_id: str, secret_access_key: str,
                     env: Mapping[str, str] | None = None, *,
                     sdk: bool = True) -> CredentialSource:
    """The first link of the chain that has credentials (``sdk``: botocore's links too, where
    it is installed); ``ConfigError`` saying what to set when none has."""
    env = os.environ if env is None else env
    if access_key_id or secret_access_key:
        if not (access_key_id and secret_access_key):
            raise ConfigError("settings s3_access_key_id and s3_secret_access_key go together: "
                              "set both, or neither to use the standard AWS chain")
        return StaticCredentials(Credentials(access_key_id, secret_access_key))
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return StaticCredentials(Credentials(env["AWS_ACCESS_KEY_ID"],
                                             env["AWS_SECRET_ACCESS_KEY"],
                                             env.get("AWS_SESSION_TOKEN", "")))
    found = _from_shared_file(env)
    if found is not None:
        return StaticCredentials(found)
    from_sdk = _from_botocore() if sdk else None
    if from_sdk is not None:
        return from_sdk
    raise ConfigError("results in S3 (s3_bucket) need credentials: set s3_access_key_id and "
                      "s3_secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                      "or a profile in ~/.aws/credentials (AWS_PROFILE); for instance, "
                      "container, web-identity and SSO credentials install imagegate[aws]")


def _from_botocore() -> SdkCredentials | None:
    """botocore's whole chain, where botocore is installed (it reads the process's
    environment and ~/.aws itself)."""
    try:
        session = importlib.import_module("botocore.session")
    except ImportError:
        return None
    try:
        found = session.Session().get_credentials()
    except Exception as exc:  # botocore's errors: a profile that does not parse, a bad SSO cache
        raise ConfigError(f"the AWS credential chain (botocore) failed: {exc}") from exc
    return None if found is None else SdkCredentials(found, str(found.method))


def _from_shared_file(env: Mapping[str, str]) -> Credentials | None:
    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    profile = env.get("AWS_PROFILE") or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.expanduser().read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"AWS shared credentials file {path} cannot be read: {exc}") from exc
    if not parser.has_section(profile):
        if env.get("AWS_PROFILE"):
            raise ConfigError(f"AWS_PROFILE names profile {profile}, which {path} does not have")
        return None
    section = parser[profile]
    key, secret = section.get("aws_access_key_id", ""), section.get("aws_secret_access_key", "")
    if not (key and secret):
        raise ConfigError(f"profile {profile} of {path} needs aws_access_key_id and "
                          "aws_secret_access_key")
    return Credentials(key, secret, section.get("aws_session_token", ""))
