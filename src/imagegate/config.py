"""Settings: read once at start from defaults, an optional TOML file and ``IMAGEGATE_*``
environment variables (later sources win), then passed down explicitly.

Every scalar setting has one name. In TOML it is written either flat (``worker_concurrency = 4``)
or in the table named by its first word (``[worker]`` ``concurrency = 4``); in the environment it
is ``IMAGEGATE_`` + the name in upper case (``IMAGEGATE_WORKER_CONCURRENCY=4``). The catalogue
(``[models.<id>]``) and routes (``[routes.<name>]``) are TOML only. ``docs/configuration.md`` is
generated from ``SETTINGS`` below (``imagegate config reference``).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imagegate.catalogue import ModelConfig, RouteConfig, catalogue_from_toml
from imagegate.errors import ConfigError
from imagegate.money import usd_to_micros

ENV_PREFIX = "IMAGEGATE_"


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", str, "./imagegate-data",
            "Directory for the SQLite database and result files."),
    Setting("host", str, "127.0.0.1", "Address `imagegate serve` listens on."),
    Setting("port", int, 8000, "Port `imagegate serve` listens on."),
    Setting("public_url", str, "", "Base URL clients reach the service at; result and callback "
            "URLs are built on it. Empty: http://HOST:PORT."),
    Setting("database_url", str, "", "Database: sqlite:///PATH, postgresql://... (with "
            "?pool_size=N&pool_timeout=S of imagegate's own), or memory: (nothing kept). "
            "Empty: sqlite:///DATA_DIR/imagegate.db. See docs/fleet.md."),
    Setting("storage_dir", str, "", "Directory for result files. Empty: DATA_DIR/results."),
    Setting("s3_bucket", str, "", "S3 bucket for result files (AWS, MinIO, R2...). Empty: result "
            "files on local disk (storage_dir). See docs/storage.md."),
    Setting("s3_prefix", str, "", "Folder in the bucket the result files go under (a trailing / "
            "is added). Empty: the bucket's root."),
    Setting("s3_endpoint_url", str, "", "S3 endpoint, http(s)://HOST[:PORT], for MinIO, R2 and "
            "other S3-compatible services. Empty: AWS in s3_region."),
    Setting("s3_region", str, "us-east-1", "Region requests are signed for (and the AWS "
            "endpoint's, when s3_endpoint_url is empty)."),
    Setting("s3_addressing_style", str, "virtual", "Where requests name the bucket: virtual "
            "(its host name, BUCKET.HOST: AWS) or path (HOST/BUCKET: MinIO and most "
            "self-hosted servers)."),
    Setting("s3_access_key_id", str, "", "S3 access key. Empty (with s3_secret_access_key): the "
            "standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
            "AWS_SESSION_TOKEN), then ~/.aws/credentials (AWS_PROFILE), then, with "
            "imagegate[aws], roles and SSO. See docs/storage.md."),
    Setting("s3_secret_access_key", str, "", "S3 secret key, set together with "
            "s3_access_key_id. Never logged."),
    Setting("results_delivery", str, "proxy", "How result URLs answer: proxy (the API streams "
            "the bytes) or redirect (307 to a presigned URL of the bucket, valid at most 5 "
            "minutes and never past the result's expiry; needs s3_bucket)."),
    Setting("allow_private_networks", bool, False, "Fetch reference images from loopback, private "
            "and other non-public addresses. Off in production; tests turn it on."),
    Setting("allow_http_callbacks", bool, False, "Accept plain-http callback_url values."),
    Setting("lock_data_dir", bool, True, "Let `imagegate serve` refuse a data directory another "
            "server is using. Off only to run several processes on one database on purpose."),
    Setting("retention_days", float, 15.0, "Days result URLs keep working; then 410 and the "
            "bytes are deleted."),
    Setting("record_retention_days", float, 90.0, "Days a finished task's record (its status, "
            "route attempts, callback deliveries) is kept; then the sweeper deletes it and its "
            "status answers 404. The ledger keeps every line. At least retention_days; 0 keeps "
            "records forever."),
    Setting("auth_cache_seconds", float, 1.0, "How long a process may reuse an API key it found "
            "active without reading it again; a revoked key stops working within this time. "
            "0 reads the key on every request."),
    Setting("limits_max_body_bytes", int, 32 * 1024 * 1024, "Largest submit body (413 above)."),
    Setting("limits_submit_rate", float, 20.0, "Default submits per second per API key "
            "(token bucket refill rate)."),
    Setting("limits_submit_burst", int, 40, "Default submit burst per API key."),
    Setting("limits_max_concurrent_tasks", int, 100, "Default unfinished tasks per API key."),
    Setting("fetch_max_image_bytes", int, 20 * 1024 * 1024, "Largest reference image."),
    Setting("fetch_max_image_pixels", int, 64_000_000, "Largest reference image in pixels "
            "(decompression-bomb guard)."),
    Setting("fetch_timeout_seconds", float, 30.0, "Time allowed to fetch one reference image."),
    Setting("worker_concurrency", int, 4, "Tasks one worker runs at once."),
    Setting("worker_lease_seconds", float, 30.0, "Lease on a claimed task; heartbeats renew it."),
    Setting("worker_max_attempts", int, 3, "Attempts per task before it fails and is refunded."),
    Setting("worker_task_deadline_seconds", float, 900.0, "A task not finished this long after "
            "submit fails with Timeout."),
    Setting("worker_poll_seconds", float, 1.0, "How often an idle worker looks for work it was "
            "not told about."),
    Setting("worker_retry_backoff_seconds", float, 2.0, "First delay before retrying a task; "
            "doubles each attempt."),
    Setting("worker_shutdown_grace_seconds", float, 30.0, "On SIGTERM, how long `imagegate "
            "worker` lets running attempts finish before it hands their tasks back to the "
            "queue."),
    Setting("router_failure_threshold", int, 5, "Failures in a row (rate limits, timeouts, "
            "unknown errors) that open a route's circuit."),
    Setting("router_cooldown_seconds", float, 30.0, "How long an open circuit keeps a route "
            "out before one trial task is let through."),
    Setting("router_check_models", bool, True, "At start, ask each upstream whether the model "
            "of each route is still served; a route whose model is gone is marked unavailable "
            "and skipped. Off: routes are assumed available until a call says otherwise."),
    Setting("router_recheck_seconds", float, 300.0, "How often a route marked unavailable asks "
            "its upstream again whether its model is served."),
    Setting("sweeper_interval_seconds", float, 2.0, "How often expired leases, results and "
            "records are swept."),
    Setting("sandbox_delay_seconds", float, 1.0, "Delay before the sandbox route answers."),
    Setting("facades_wait_seconds", float, 300.0, "How long a call to the OpenAI Images or "
            "Gemini facade waits for its task before it answers a timeout error; the task "
            "goes on, and its id is in the error and in the task list."),
    Setting("callbacks_timeout_seconds", float, 30.0, "Time a callback receiver has to answer."),
    Setting("callbacks_max_attempts", int, 10, "Delivery attempts before a callback is given up."),
    Setting("callbacks_retry_schedule", str, "10,60,300,900,3600,7200,14400,28800,28800",
            "Seconds to wait after each failed delivery attempt (comma-separated; the last "
            "repeats), each with +-10% jitter. The default spans about a day."),
    Setting("gemini_api_key", str, "", "Google Gemini API key. Set, the default catalogue "
            "serves every model from Google's Gemini API instead of the sandbox. Never logged."),
    Setting("gemini_base_url", str, "https://generativelanguage.googleapis.com",
            "Gemini API endpoint (a regional or proxy endpoint can go here)."),
    Setting("vertex_credentials_file", str, "", "Service-account JSON key file for Vertex AI. "
            "Set (or vertex_api_key), the default catalogue serves every model from Vertex AI "
            "too, after the Gemini API when both are set."),
    Setting("vertex_api_key", str, "", "Vertex AI API key (express mode), used when "
            "vertex_credentials_file is empty. Never logged."),
    Setting("vertex_project", str, "", "Google Cloud project for Vertex AI. Empty: the "
            "service-account file's project (an API key alone needs none)."),
    Setting("vertex_location", str, "global", "Vertex AI location: global, or a region such "
            "as us-central1."),
    Setting("callbacks_rotation_overlap_seconds", float, 86400.0, "After a signing secret is "
            "rotated, how long deliveries stay signed with the old one too."),
    Setting("demo_credit_usd", str, "10", "Credit of the demo key created on first start."),
    Setting("log_level", str, "info", "Log level: debug, info, warning, error."),
    Setting("log_format", str, "text", "Log lines: text (one line for people) or json (one "
            "JSON object per line, with task_id, route, model and delivery_id where known)."),
    Setting("metrics_enabled", bool, True, "Serve Prometheus metrics at /metrics on the API "
            "port of `imagegate serve` and `imagegate api`, without the API key: do not expose "
            "it publicly. See docs/metrics.md."),
    Setting("metrics_port", int, 0, "Port on which `imagegate worker` and `imagegate "
            "sweeper` serve /metrics (on `host`); 0: none. Also --metrics-port."),
)

_BY_NAME = {s.name: s for s in SETTINGS}
_MAY_BE_ZERO = {"sandbox_delay_seconds", "auth_cache_seconds", "worker_retry_backoff_seconds",
                "callbacks_rotation_overlap_seconds", "record_retention_days"}
_PORTS = ("port", "metrics_port")
LOG_FORMATS = ("text", "json")
_SECTIONS = {"auth", "limits", "fetch", "worker", "sweeper", "sandbox", "callbacks", "demo", "log",
             "gemini", "vertex", "router", "metrics", "s3", "results", "facades"}
# Bucket names: what virtual-hosted addressing can put in a host name, and, path-style, the
# wider set that older buckets and some S3-compatible servers allow.
_DNS_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PATH_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")

@dataclass(frozen=True)
class Settings:
    data_dir: str = "./imagegate-data"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    database_url: str = ""
    storage_dir: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_addressing_style: str = "virtual"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = field(default="", repr=False)
    results_delivery: str = "proxy"
    allow_private_networks: bool = False
    allow_http_callbacks: bool = False
    lock_data_dir: bool = True
    retention_days: float = 15.0
    record_retention_days: float = 90.0
    auth_cache_seconds: float = 1.0
    limits_max_body_bytes: int = 32 * 1024 * 1024
    limits_submit_rate: float = 20.0
    limits_submit_burst: int = 40
    limits_max_concurrent_tasks: int = 100
    fetch_max_image_bytes: int = 20 * 1024 * 1024
    fetch_max_image_pixels: int = 64_000_000
    fetch_timeout_seconds: float = 30.0
    worker_concurrency: int = 4
    worker_lease_seconds: float = 30.0
    worker_max_attempts: int = 3
    worker_task_deadline_seconds: float = 900.0
    worker_poll_seconds: float = 1.0
    worker_retry_backoff_seconds: float = 2.0
    worker_shutdown_grace_seconds: float = 30.0
    router_failure_threshold: int = 5
    router_cooldown_seconds: float = 30.0
    router_check_models: bool = True
    router_recheck_seconds: float = 300.0
    sweeper_interval_seconds: float = 2.0
    sandbox_delay_seconds: float = 1.0
    facades_wait_seconds: float = 300.0
    callbacks_timeout_seconds: float = 30.0
    callbacks_max_attempts: int = 10
    callbacks_retry_schedule: str = "10,60,300,900,3600,7200,14400,28800,28800"
    callbacks_rotation_overlap_seconds: float = 86400.0
    gemini_api_key: str = field(default="", repr=False)
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    vertex_credentials_file: str = ""
    vertex_api_key: str = field(default="", repr=False)
    vertex_project: str = ""
    vertex_location: str = "global"
    demo_credit_usd: str = "10"
    log_level: str = "info"
    log_format: str = "text"
    metrics_enabled: bool = True
    metrics_port: int = 0
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    routes: Mapping[str, RouteConfig] = field(default_factory=dict)
    config_file: str = ""

    @classmethod
    def load(cls, config_file: str | None = None, env: Mapping[str, str] | None = None,
             **overrides: Any) -> Settings:
        """Defaults, then the TOML file, then the environment, then ``overrides``."""
        env = os.environ if env is None else env
        path = config_file or env.get(ENV_PREFIX + "CONFIG", "")
        doc = _read_toml(path) if path else {}
        values: dict[str, Any] = {}
        values.update(_scalars_from_toml(doc))
        values.update(_scalars_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        models, routes = catalogue_from_toml(_table(doc, "models"), _table(doc, "routes"),
                                             google_platforms(values))
        settings = cls(models=models, routes=routes, config_file=path, **values)
        settings.check()
        return settings

    # Derived values -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'imagegate.db'}"

    @property
    def results_dir(self) -> Path:
        return Path(self.storage_dir) if self.storage_dir else Path(self.data_dir) / "results"

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first setting that cannot work."""
        numbers = [s.name for s in SETTINGS if s.kind in (int, float) and s.name not in _PORTS]
        for name in numbers:
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"setting {name} must be a finite number")
            if name in _MAY_BE_ZERO and getattr(self, name) < 0:
                raise ConfigError(f"setting {name} must be 0 or more")
            if name not in _MAY_BE_ZERO and getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be greater than 0")
        for name in _PORTS:
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"setting {name} must be 0 to 65535")
        if 0 < self.record_retention_days < self.retention_days:
            raise ConfigError(
                f"setting record_retention_days ({self.record_retention_days:g}) must be at "
                f"least retention_days ({self.retention_days:g}), or 0 to keep records forever: "
                "a task's record outlives its result files")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("setting log_level must be debug, info, warning or error")
        if self.log_format.lower() not in LOG_FORMATS:
            raise ConfigError(f"setting log_format must be text or json, got "
                              f"{self.log_format!r}")
        _schedule(self.callbacks_retry_schedule)
        self._check_results()
        try:
            if usd_to_micros(self.demo_credit_usd) < 0:
                raise ValueError("negative")
        except ValueError as exc:
            raise ConfigError("setting demo_credit_usd must be a USD amount of 0 or more, "
                              f"got {self.demo_credit_usd!r}") from exc
        for model in self.models.values():
            for route in model.routes:
                if route not in self.routes:
                    raise ConfigError(f"models.{model.id}.routes names unknown route {route!r}")

    def _check_results(self) -> None:
        if self.s3_addressing_style not in ("path", "virtual"):
            raise ConfigError("setting s3_addressing_style must be path or virtual, got "
                              f"{self.s3_addressing_style!r}")
        if self.results_delivery not in ("proxy", "redirect"):
            raise ConfigError("setting results_delivery must be proxy or redirect, got "
                              f"{self.results_delivery!r}")
        if not self.s3_bucket:
            if self.results_delivery == "redirect":
                raise ConfigError("setting results_delivery = redirect needs results in S3 "
                                  "(s3_bucket): files on local disk are served by the API")
            return
        _check_bucket(self.s3_bucket, self.s3_addressing_style)
        _check_endpoint(self.s3_endpoint_url)
        if not re.fullmatch(r"[a-z0-9-]+", self.s3_region):
            raise ConfigError("setting s3_region must be a region name such as us-east-1 (auto "
                              f"for R2), got {self.s3_region!r}")
        parts = self.s3_prefix.strip("/").split("/")
        if self.s3_prefix.startswith("/") or {".", ".."} & set(parts) or "" in parts[:-1]:
            raise ConfigError("setting s3_prefix must be a folder such as imagegate/results, "
                              f"with no leading /, no empty, . or .. part; got "
                              f"{self.s3_prefix!r}")
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ConfigError("settings s3_access_key_id and s3_secret_access_key go together: "
                              "set both, or neither to use the standard AWS chain")

    @property
    def s3_key_prefix(self) -> str:
        """``s3_prefix`` as keys start with it: "" or a folder ending in ``/``."""
        return self.s3_prefix.rstrip("/") + "/" if self.s3_prefix.strip("/") else ""

    @property
    def record_retention_ms(self) -> int | None:
        """How long a finished task's record is kept, in ms; None: forever."""
        if not self.record_retention_days:
            return None
        return int(self.record_retention_days * 86_400_000)

    @property
    def retry_schedule_s(self) -> tuple[float, ...]:
        return _schedule(self.callbacks_retry_schedule)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _check_bucket(bucket: str, style: str) -> None:
    if style == "virtual" and not (_DNS_BUCKET.fullmatch(bucket) and ".." not in bucket):
        raise ConfigError(f"setting s3_bucket {bucket!r} cannot go in a host name "
                          "(s3_addressing_style = virtual): 3 to 63 lowercase letters, digits, "
                          "dots and hyphens; use path addressing for other names")
    if not _PATH_BUCKET.fullmatch(bucket):
        raise ConfigError(f"setting s3_bucket {bucket!r} is not a bucket name: letters, digits, "
                          "dots, hyphens and underscores")


def _check_endpoint(url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/")
            or parts.query or parts.fragment or parts.username or parts.password):
        raise ConfigError("setting s3_endpoint_url must be http(s)://HOST[:PORT] with nothing "
                          f"after it, got {url!r}")


def google_platforms(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The Google platforms whose credentials are set, as the catalogue names them."""
    platforms = []
    if values.get("gemini_api_key"):
        platforms.append("gemini")
    if values.get("vertex_credentials_file") or values.get("vertex_api_key"):
        platforms.append("vertex")
    return tuple(platforms)


# Parsing ------------------------------------------------------------------------------------


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key} in the config file must be a table ([{key}.<name>])")
    return value


def _scalars_from_toml(doc: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("models", "routes"):
            continue
        if isinstance(value, dict) and key in _SECTIONS:
            for sub, subvalue in value.items():
                out[_known(f"{key}_{sub}", f"[{key}] {sub}")] = subvalue
        else:
            out[_known(key, key)] = value
    return {k: _coerce(_BY_NAME[k], v, f"config {k}") for k, v in out.items()}


def _scalars_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(ENV_PREFIX + setting.name.upper())
        if raw is not None and raw != "":
            out[setting.name] = _coerce(setting, raw, ENV_PREFIX + setting.name.upper())
    return out


def _known(name: str, shown: str) -> str:
    if name not in _BY_NAME:
        raise ConfigError(f"unknown setting {shown} in the config file")
    return name


def _coerce(setting: Setting, value: Any, where: str) -> Any:
    kind = setting.kind
    try:
        if kind is bool:
            return _to_bool(value)
        if kind is int and isinstance(value, (int, str)) and not isinstance(value, bool):
            return int(value)
        if kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{where} must be a {kind.__name__}, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _schedule(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(v < 0 for v in values):
        raise ConfigError("setting callbacks_retry_schedule must be a comma-separated list of "
                          "seconds, such as 10,60,300")
    return values


def reference_markdown() -> str:
    """The configuration reference, one row per setting."""
    rows = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = f'"{s.default}"' if s.kind is str else str(s.default).lower()
        rows.append(f"| `{s.name}` | `{ENV_PREFIX}{s.name.upper()}` | `{default}` | {s.help} |")
    return "\n".join(rows)


__all__ = [
    "ENV_PREFIX",
    "SETTINGS",
    "ModelConfig",
    "RouteConfig",
    "Settings",
    "reference_markdown",
]
