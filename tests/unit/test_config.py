"""Settings from defaults, TOML, environment and overrides (config.py)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from imagegate.config import SETTINGS, RouteConfig, Settings, reference_markdown
from imagegate.contract import RATIOS, RESOLUTIONS
from imagegate.errors import ConfigError
from imagegate.routes.google_models import TEN_RATIOS

NOT_SETTINGS = {"models", "routes", "config_file"}


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "imagegate.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def load(tmp_path: Path | None = None, text: str | None = None,
         env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    path = toml(tmp_path, text) if tmp_path is not None and text is not None else None
    return Settings.load(path, env={} if env is None else env, **overrides)


def config_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(*args, **kwargs)
    return str(caught.value)


# Defaults and the SETTINGS table --------------------------------------------------------------


def test_settings_table_defaults_equal_the_dataclass_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)
                if f.name not in NOT_SETTINGS}
    assert {s.name for s in SETTINGS} == set(defaults)
    for setting in SETTINGS:
        assert defaults[setting.name] == setting.default, setting.name
        assert type(defaults[setting.name]) is setting.kind, setting.name


def test_settings_table_kinds_match_the_dataclass_annotations() -> None:
    hints = typing.get_type_hints(Settings)
    for setting in SETTINGS:
        assert hints[setting.name] is setting.kind, setting.name


def test_every_setting_has_help_and_a_unique_name() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.help.strip() for s in SETTINGS)


def test_loading_nothing_gives_the_defaults() -> None:
    settings = load()
    for setting in SETTINGS:
        assert getattr(settings, setting.name) == setting.default, setting.name
    assert settings.config_file == ""


DEFAULT_MODELS = {"nano-banana-2", "nano-banana-2.1", "nano-banana-pro", "nano-banana-2-lite",
                  "nano-banana"}


def test_default_catalogue_serves_nano_banana_2_on_the_sandbox_at_the_contract_prices() -> None:
    settings = load()
    assert set(settings.models) == DEFAULT_MODELS
    model = settings.models["nano-banana-2"]
    assert dict(model.prices) == {"1k": 50_000, "2k": 80_000, "4k": 120_000}
    assert model.routes == ("sandbox",)
    assert model.limits.ratios == RATIOS
    assert model.limits.resolutions == RESOLUTIONS
    assert model.limits.max_prompt_chars == 20000
    assert model.limits.max_references == 14
    assert settings.routes == {"sandbox": RouteConfig("sandbox", "sandbox")}
    assert {m.routes for m in settings.models.values()} == {("sandbox",)}


def test_other_default_models_have_their_own_limits() -> None:
    models = load().models
    pro, first = models["nano-banana-pro"].limits, models["nano-banana"].limits
    lite, v21 = models["nano-banana-2-lite"].limits, models["nano-banana-2.1"].limits
    assert "8:1" not in pro.ratios and len(pro.ratios) == 10 and pro.resolutions == RESOLUTIONS
    assert first.resolutions == ("1k",) and first.size_table == "gemini-2.5"
    assert len(first.ratios) == 10 and first.max_prompt_chars == 5000
    assert dict(models["nano-banana"].prices) == {"1k": 30_000}
    assert lite.resolutions == ("1k",) and lite.ratios == TEN_RATIOS
    assert dict(models["nano-banana-2-lite"].prices) == {"1k": 30_000}
    assert v21.ratios == RATIOS and v21.resolutions == RESOLUTIONS and v21.max_references == 14


def test_a_gemini_key_puts_every_default_model_on_a_served_google_model() -> None:
    settings = load(env={"IMAGEGATE_GEMINI_API_KEY": "secret-key"})
    assert {m: c.routes for m, c in settings.models.items()} == {
        "nano-banana-2": ("gemini",), "nano-banana-2.1": ("gemini-nano-banana-2.1",),
        "nano-banana-pro": ("gemini-pro",), "nano-banana-2-lite": ("gemini-lite",),
        "nano-banana": ("gemini-nano-banana",)}
    google = {name: r.options["model"] for name, r in settings.routes.items()
              if r.type == "gemini"}
    assert google == {"gemini": "gemini-nano-banana-2.1",
                      "gemini-nano-banana-2.1": "gemini-nano-banana-2.1",
                      "gemini-pro": "gemini-3-pro-image",
                      "gemini-lite": "gemini-3.1-flash-lite-image",
                      "gemini-nano-banana": "gemini-3.1-flash-lite-image"}
    assert settings.routes["gemini-pro"].model_key == "models.nano-banana-pro.google_model"
    assert "secret-key" not in repr(settings)


def test_vertex_credentials_add_vertex_routes_after_the_gemini_api() -> None:
    settings = load(env={"IMAGEGATE_GEMINI_API_KEY": "k",
                         "IMAGEGATE_VERTEX_API_KEY": "vertex-secret-key"})
    assert settings.models["nano-banana-pro"].routes == ("gemini-pro", "vertex-pro")
    vertex = settings.routes["vertex"]
    assert vertex.type == "gemini"
    assert vertex.options == {"model": "gemini-nano-banana-2.1", "platform": "vertex"}
    only = load(env={"IMAGEGATE_VERTEX_CREDENTIALS_FILE": "/etc/sa.json"})
    assert only.models["nano-banana-2"].routes == ("vertex",)
    assert "vertex-secret-key" not in repr(settings)


def test_google_model_pins_a_default_route_to_another_model(tmp_path: Path) -> None:
    settings = load(tmp_path, '[models.nano-banana-2]\ngoogle_model = "gemini-3.1-flash-image"\n',
                    env={"IMAGEGATE_GEMINI_API_KEY": "k"})
    assert settings.routes["gemini"].options["model"] == "gemini-3.1-flash-image"
    assert settings.routes["gemini-nano-banana-2.1"].options["model"] == \
        "gemini-nano-banana-2.1"


def test_a_route_table_replaces_the_default_route_of_that_name(tmp_path: Path) -> None:
    settings = load(tmp_path, '[routes.gemini]\nmodel = "gemini-3.1-flash-image"\n'
                              'thinking_level = "minimal"\n',
                    env={"IMAGEGATE_GEMINI_API_KEY": "k"})
    route = settings.routes["gemini"]
    assert route.options == {"model": "gemini-3.1-flash-image", "thinking_level": "minimal"}
    assert route.model_key == "routes.gemini.model"
    assert settings.models["nano-banana-2"].routes == ("gemini",)


def test_a_model_of_its_own_with_a_google_model_gets_google_routes(tmp_path: Path) -> None:
    settings = load(tmp_path, '[models.house]\ngoogle_model = "gemini-3-pro-image"\n',
                    env={"IMAGEGATE_GEMINI_API_KEY": "k"})
    assert settings.models["house"].routes == ("gemini-house",)
    assert settings.routes["gemini-house"].options == {"model": "gemini-3-pro-image"}
    assert load(tmp_path, '[models.house]\ngoogle_model = "x"\n').models["house"].routes == \
        ("sandbox",)


def test_google_model_must_be_text(tmp_path: Path) -> None:
    assert "models.house.google_model" in config_error(tmp_path,
                                                       "[models.house]\ngoogle_model = 3\n")


def test_defaults_pass_their_own_check() -> None:
    Settings().check()


# TOML -----------------------------------------------------------------------------------------


def test_toml_flat_keys_are_read(tmp_path: Path) -> None:
    settings = load(tmp_path, 'worker_concurrency = 8\nhost = "0.0.0.0"\nport = 9000\n'
                              "allow_private_networks = true\nretention_days = 1.5\n")
    assert settings.worker_concurrency == 8
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.allow_private_networks is True
    assert settings.retention_days == 1.5
    assert settings.config_file.endswith("imagegate.toml")


def test_toml_sectioned_keys_are_read(tmp_path: Path) -> None:
    settings = load(tmp_path, "[worker]\nconcurrency = 8\nlease_seconds = 12\n"
                              "[limits]\nsubmit_rate = 2.5\nmax_concurrent_tasks = 7\n"
                              "[callbacks]\nmax_attempts = 3\n"
                              "[sandbox]\ndelay_seconds = 0\n"
                              '[log]\nlevel = "debug"\n'
                              '[demo]\ncredit_usd = "25"\n')
    assert settings.worker_concurrency == 8
    assert settings.worker_lease_seconds == 12.0
    assert isinstance(settings.worker_lease_seconds, float)
    assert settings.limits_submit_rate == 2.5
    assert settings.limits_max_concurrent_tasks == 7
    assert settings.callbacks_max_attempts == 3
    assert settings.sandbox_delay_seconds == 0.0
    assert settings.log_level == "debug"
    assert settings.demo_credit_usd == "25"


def test_toml_file_may_be_named_by_the_environment(tmp_path: Path) -> None:
    path = toml(tmp_path, "worker_concurrency = 6\n")
    settings = Settings.load(env={"IMAGEGATE_CONFIG": path})
    assert settings.worker_concurrency == 6
    assert settings.config_file == path


def test_unknown_toml_key_is_refused_by_name(tmp_path: Path) -> None:
    assert "colour" in config_error(tmp_path, 'colour = "blue"\n')


def test_unknown_key_in_a_toml_section_is_refused_by_name(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[worker]\nspeed = 3\n")
    assert "[worker] speed" in message


def test_unknown_toml_section_is_refused(tmp_path: Path) -> None:
    assert "gpu" in config_error(tmp_path, "[gpu]\ncount = 1\n")


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(str(tmp_path / "nope.toml"), env={})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    assert "not valid TOML" in config_error(tmp_path, "port = = 3\n")


@pytest.mark.parametrize(("text", "name"), [
    ('port = "eighty"\n', "port"),
    ('worker_concurrency = "many"\n', "worker_concurrency"),
    ('[worker]\nlease_seconds = "long"\n', "worker_lease_seconds"),
    ('allow_http_callbacks = "sometimes"\n', "allow_http_callbacks"),
    ("worker_concurrency = true\n", "worker_concurrency"),
])
def test_toml_value_of_the_wrong_kind_names_the_setting(tmp_path: Path, text: str,
                                                        name: str) -> None:
    assert name in config_error(tmp_path, text)


def test_toml_array_for_a_number_names_the_setting(tmp_path: Path) -> None:
    assert "port" in config_error(tmp_path, "port = [8000]\n")


def test_toml_fraction_for_an_integer_setting_is_refused(tmp_path: Path) -> None:
    assert "worker_concurrency" in config_error(tmp_path, "worker_concurrency = 2.7\n")


# Environment and overrides --------------------------------------------------------------------


def test_environment_sets_values_with_the_prefix() -> None:
    settings = load(env={"IMAGEGATE_WORKER_CONCURRENCY": "9", "IMAGEGATE_HOST": "::",
                         "IMAGEGATE_ALLOW_HTTP_CALLBACKS": "yes",
                         "IMAGEGATE_RETENTION_DAYS": "0.5", "WORKER_CONCURRENCY": "1"})
    assert settings.worker_concurrency == 9
    assert settings.host == "::"
    assert settings.allow_http_callbacks is True
    assert settings.retention_days == 0.5


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("true", True), ("YES", True),
                                            ("on", True), ("0", False), ("false", False),
                                            ("No", False), ("off", False)])
def test_environment_booleans(raw: str, value: bool) -> None:
    settings = load(env={"IMAGEGATE_ALLOW_PRIVATE_NETWORKS": raw})
    assert settings.allow_private_networks is value


def test_empty_environment_value_keeps_the_default() -> None:
    assert load(env={"IMAGEGATE_PORT": ""}).port == 8000


def test_environment_overrides_toml(tmp_path: Path) -> None:
    settings = load(tmp_path, "worker_concurrency = 8\n[limits]\nsubmit_burst = 5\n",
                    env={"IMAGEGATE_WORKER_CONCURRENCY": "9"})
    assert settings.worker_concurrency == 9
    assert settings.limits_submit_burst == 5


def test_explicit_overrides_win_over_environment_and_toml(tmp_path: Path) -> None:
    settings = load(tmp_path, "worker_concurrency = 8\nport = 1234\n",
                    env={"IMAGEGATE_WORKER_CONCURRENCY": "9"}, worker_concurrency=10,
                    port=None)
    assert settings.worker_concurrency == 10
    assert settings.port == 1234  # a None override means "not given"


@pytest.mark.parametrize(("env", "name"), [
    ({"IMAGEGATE_PORT": "eighty"}, "IMAGEGATE_PORT"),
    ({"IMAGEGATE_WORKER_LEASE_SECONDS": "soon"}, "IMAGEGATE_WORKER_LEASE_SECONDS"),
    ({"IMAGEGATE_ALLOW_HTTP_CALLBACKS": "maybe"}, "IMAGEGATE_ALLOW_HTTP_CALLBACKS"),
    ({"IMAGEGATE_WORKER_CONCURRENCY": "0"}, "worker_concurrency"),
    ({"IMAGEGATE_WORKER_CONCURRENCY": "-2"}, "worker_concurrency"),
    ({"IMAGEGATE_LIMITS_SUBMIT_RATE": "0"}, "limits_submit_rate"),
    ({"IMAGEGATE_WORKER_LEASE_SECONDS": "0"}, "worker_lease_seconds"),
    ({"IMAGEGATE_SANDBOX_DELAY_SECONDS": "-1"}, "sandbox_delay_seconds"),
    ({"IMAGEGATE_PORT": "70000"}, "port"),
    ({"IMAGEGATE_PORT": "-1"}, "port"),
    ({"IMAGEGATE_LOG_LEVEL": "loud"}, "log_level"),
    ({"IMAGEGATE_CALLBACKS_RETRY_SCHEDULE": "soon,later"}, "callbacks_retry_schedule"),
])
def test_bad_environment_value_names_the_setting(env: dict[str, str], name: str) -> None:
    assert name in config_error(env=env)


def test_bad_override_names_the_setting() -> None:
    assert "worker_max_attempts" in config_error(worker_max_attempts=0)


def test_settings_that_may_be_zero() -> None:
    settings = load(env={"IMAGEGATE_SANDBOX_DELAY_SECONDS": "0",
                         "IMAGEGATE_WORKER_RETRY_BACKOFF_SECONDS": "0", "IMAGEGATE_PORT": "0"})
    assert settings.sandbox_delay_seconds == 0.0
    assert settings.worker_retry_backoff_seconds == 0.0
    assert settings.port == 0


@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_non_finite_float_setting_is_refused(raw: str) -> None:
    assert "worker_lease_seconds" in config_error(env={"IMAGEGATE_WORKER_LEASE_SECONDS": raw})


def test_record_retention_shorter_than_result_retention_names_both_settings() -> None:
    message = config_error(env={"IMAGEGATE_RECORD_RETENTION_DAYS": "10"})
    assert "record_retention_days (10)" in message and "retention_days (15)" in message
    message = config_error(retention_days=120.0)  # past the default record retention
    assert "record_retention_days (90)" in message and "retention_days (120)" in message
    assert "must be 0 or more" in config_error(record_retention_days=-1.0)


def test_record_retention_at_least_result_retention_or_0_for_forever() -> None:
    assert load().record_retention_ms == 90 * 86_400_000
    assert load(record_retention_days=15.0).record_retention_ms == 15 * 86_400_000
    assert load(retention_days=120.0, record_retention_days=0.0).record_retention_ms is None


def test_bad_demo_credit_names_the_setting() -> None:
    assert "demo_credit_usd" in config_error(env={"IMAGEGATE_DEMO_CREDIT_USD": "ten dollars"})


# Models and routes ----------------------------------------------------------------------------


def test_custom_prices_replace_the_defaults_per_resolution(tmp_path: Path) -> None:
    settings = load(tmp_path, '[models.nano-banana-2]\nprices = { 1k = "0.10", 4k = 0.5 }\n')
    prices = settings.models["nano-banana-2"].prices
    assert dict(prices) == {"1k": 100_000, "2k": 80_000, "4k": 500_000}


def test_bad_price_names_the_model_and_resolution(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[models.nano-banana-2]\nprices = { 2k = "cheap" }\n')
    assert "models.nano-banana-2.prices.2k" in message


def test_price_finer_than_a_micro_dollar_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[models.nano-banana-2]\nprices = { 1k = "0.0000001" }\n')
    assert "models.nano-banana-2.prices.1k" in message


def test_negative_price_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[models.nano-banana-2]\nprices = { 1k = "-1" }\n')
    assert "models.nano-banana-2.prices.1k" in message


def test_model_table_sets_limits_and_ratio_subset(tmp_path: Path) -> None:
    settings = load(tmp_path, '[models.tiny]\nratios = ["16:9", "1:1"]\nresolutions = ["1k"]\n'
                              "max_prompt_chars = 100\nmax_references = 2\nmax_images = 1\n"
                              'routes = ["sandbox"]\nprices = { 1k = "0.01" }\n')
    model = settings.models["tiny"]
    assert model.limits.ratios == ("1:1", "16:9")  # the contract's order, not the file's
    assert model.limits.resolutions == ("1k",)
    assert model.limits.max_prompt_chars == 100
    assert model.limits.max_references == 2
    assert model.limits.max_images == 1
    assert dict(model.prices) == {"1k": 10_000}
    assert "nano-banana-2" in settings.models


@pytest.mark.parametrize(("value", "where"), [('["1:2"]', "models.m.ratios"),
                                              ("[]", "models.m.ratios"),
                                              ('"1:1"', "models.m.ratios")])
def test_ratios_must_be_a_subset_of_the_listed_ones(tmp_path: Path, value: str,
                                                    where: str) -> None:
    assert where in config_error(tmp_path, f"[models.m]\nratios = {value}\n")


def test_resolutions_must_be_a_subset_of_the_listed_ones(tmp_path: Path) -> None:
    assert "models.m.resolutions" in config_error(tmp_path, '[models.m]\nresolutions = ["8k"]\n')


@pytest.mark.parametrize("line", ['max_images = "many"', "max_images = 0",
                                  "max_references = -1", "max_prompt_chars = 0"])
def test_bad_model_limit_names_the_model(tmp_path: Path, line: str) -> None:
    assert "models.m" in config_error(tmp_path, f"[models.m]\n{line}\n")


def test_routes_table_configures_routes_by_type(tmp_path: Path) -> None:
    settings = load(tmp_path, '[routes.gem]\ntype = "gemini"\napi_key = "k"\ntimeout = 60\n'
                              '[routes.slow-sandbox]\ntype = "sandbox"\ndelay = 2\n'
                              '[models.nano-banana-2]\nroutes = ["gem", "slow-sandbox"]\n')
    assert settings.routes["gem"] == RouteConfig("gem", "gemini", {"api_key": "k", "timeout": 60})
    assert settings.routes["slow-sandbox"].type == "sandbox"
    assert "sandbox" in settings.routes
    assert settings.models["nano-banana-2"].routes == ("gem", "slow-sandbox")


def test_max_in_flight_is_a_key_of_every_route_not_an_option(tmp_path: Path) -> None:
    settings = load(tmp_path, '[routes.slow]\ntype = "sandbox"\nmax_in_flight = 3\n')
    assert settings.routes["slow"] == RouteConfig("slow", "sandbox", {}, max_in_flight=3)
    assert settings.routes["sandbox"].max_in_flight is None


@pytest.mark.parametrize("value", ["0", "-1", '"8"', "true", "1.5"])
def test_max_in_flight_must_be_a_whole_number_of_at_least_one(tmp_path: Path,
                                                              value: str) -> None:
    message = config_error(tmp_path, f'[routes.slow]\ntype = "sandbox"\nmax_in_flight = {value}\n')
    assert "routes.slow.max_in_flight" in message


def test_route_type_defaults_to_its_name(tmp_path: Path) -> None:
    assert load(tmp_path, "[routes.relay]\nurl = 'https://x'\n").routes["relay"].type == "relay"


def test_model_naming_an_unknown_route_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[models.nano-banana-2]\nroutes = ["gemini"]\n')
    assert "gemini" in message
    assert "models.nano-banana-2" in message


def test_model_with_no_routes_is_refused(tmp_path: Path) -> None:
    assert "models.m.routes" in config_error(tmp_path, "[models.m]\nroutes = []\n")


@pytest.mark.parametrize("text", ["[models]\nm = 3\n", "[routes]\nr = 3\n"])
def test_each_model_and_route_must_be_a_table(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, text)


@pytest.mark.parametrize("text", ["models = 3\n", "routes = [1]\n"])
def test_models_and_routes_must_be_tables(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, text)


# Documentation and derived values -------------------------------------------------------------


def test_reference_markdown_lists_every_setting_with_its_variable_and_default() -> None:
    text = reference_markdown()
    lines = text.splitlines()
    assert len(lines) == 2 + len(SETTINGS)
    for setting in SETTINGS:
        row = next(line for line in lines if line.startswith(f"| `{setting.name}` |"))
        assert f"`IMAGEGATE_{setting.name.upper()}`" in row
        assert setting.help in row


def test_reference_markdown_writes_defaults_as_a_reader_would_type_them() -> None:
    text = reference_markdown()
    assert "| `port` | `IMAGEGATE_PORT` | `8000` |" in text
    assert "| `allow_http_callbacks` | `IMAGEGATE_ALLOW_HTTP_CALLBACKS` | `false` |" in text
    host = next(line for line in text.splitlines() if line.startswith("| `host` |"))
    assert "127.0.0.1" in host.split("|")[3]


@pytest.mark.parametrize(("changes", "url"), [
    ({}, "http://127.0.0.1:8000"),
    ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),
    ({"host": "::"}, "http://127.0.0.1:8000"),
    ({"host": "::1"}, "http://[::1]:8000"),
    ({"host": "images.local", "port": 80}, "http://images.local:80"),
    ({"public_url": "https://img.example.com/"}, "https://img.example.com"),
    ({"public_url": "https://example.com/imagegate", "host": "0.0.0.0"},
     "https://example.com/imagegate"),
])
def test_base_url_derivation(changes: dict[str, Any], url: str) -> None:
    assert Settings(**changes).base_url == url


def test_database_and_results_dir_derive_from_data_dir() -> None:
    settings = Settings(data_dir="/srv/ig")
    assert settings.database == "sqlite:////srv/ig/imagegate.db"
    assert settings.results_dir == Path("/srv/ig/results")
    explicit = Settings(data_dir="/srv/ig", database_url="postgresql://db/ig",
                        storage_dir="/mnt/results")
    assert explicit.database == "postgresql://db/ig"
    assert explicit.results_dir == Path("/mnt/results")


def test_retry_schedule_is_parsed_from_its_setting() -> None:
    assert load(env={"IMAGEGATE_CALLBACKS_RETRY_SCHEDULE": "5, 30,600"}).retry_schedule_s == (
        5.0, 30.0, 600.0)


def test_with_returns_a_changed_copy() -> None:
    settings = Settings()
    changed = settings.with_(port=1)
    assert changed.port == 1
    assert settings.port == 8000


def test_metrics_settings_take_their_own_table_and_a_port_of_zero_means_none(
        tmp_path: Path) -> None:
    assert (Settings().metrics_enabled, Settings().metrics_port) == (True, 0)
    settings = load(tmp_path, "[metrics]\nenabled = false\nport = 9102\n[log]\nformat = 'json'\n")
    assert (settings.metrics_enabled, settings.metrics_port, settings.log_format) == (
        False, 9102, "json")
    assert "metrics_port must be 0 to 65535" in config_error(env={
        "IMAGEGATE_METRICS_PORT": "70000"})
    assert "IMAGEGATE_METRICS_ENABLED must be a bool" in config_error(env={
        "IMAGEGATE_METRICS_ENABLED": "maybe"})


# Results in S3 --------------------------------------------------------------------------------


def test_s3_settings_come_from_a_toml_section_and_the_environment(tmp_path: Path) -> None:
    text = '[s3]\nbucket = "results"\naddressing_style = "path"\n[results]\ndelivery = "redirect"\n'
    settings = load(tmp_path, text, env={"IMAGEGATE_S3_ENDPOINT_URL": "http://minio:9000",
                                         "IMAGEGATE_S3_PREFIX": "imagegate/results"})
    assert (settings.s3_bucket, settings.s3_addressing_style, settings.results_delivery) == \
        ("results", "path", "redirect")
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_key_prefix == "imagegate/results/"
    assert load(s3_bucket="b" * 3).s3_key_prefix == ""


def test_the_s3_secret_is_never_shown() -> None:
    settings = load(s3_bucket="bucket", s3_access_key_id="AKIDSHOWN",
                    s3_secret_access_key="very-secret")
    assert "AKIDSHOWN" in repr(settings) and "very-secret" not in repr(settings)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"s3_addressing_style": "host"}, "setting s3_addressing_style must be path or virtual"),
    ({"results_delivery": "cdn"}, "setting results_delivery must be proxy or redirect"),
    ({"results_delivery": "redirect"}, "results_delivery = redirect needs results in S3 "
                                       "(s3_bucket)"),
    ({"s3_bucket": "My_Bucket"}, "setting s3_bucket 'My_Bucket' cannot go in a host name"),
    ({"s3_bucket": "a/b", "s3_addressing_style": "path"}, "'a/b' is not a bucket name"),
    ({"s3_bucket": "ok-bucket", "s3_endpoint_url": "minio:9000"}, "setting s3_endpoint_url "
                                                                  "must be http(s)://HOST"),
    ({"s3_bucket": "ok-bucket", "s3_endpoint_url": "https://r2.example/bucket"},
     "s3_endpoint_url must be"),
    ({"s3_bucket": "ok-bucket", "s3_endpoint_url": "http://minio:port"},
     "s3_endpoint_url must be"),
    ({"s3_bucket": "ok-bucket", "s3_region": "US East"}, "setting s3_region must be"),
    ({"s3_bucket": "ok-bucket", "s3_prefix": "/abs"}, "setting s3_prefix must be a folder"),
    ({"s3_bucket": "ok-bucket", "s3_prefix": "a/../b"}, "setting s3_prefix must be a folder"),
    ({"s3_bucket": "ok-bucket", "s3_access_key_id": "AKID"}, "s3_access_key_id and "
                                                             "s3_secret_access_key go together"),
])
def test_bad_s3_settings_are_refused_naming_the_setting(overrides: dict[str, Any],
                                                        message: str) -> None:
    assert message in config_error(**overrides)


def test_path_addressing_takes_bucket_names_a_host_name_cannot() -> None:
    assert load(s3_bucket="Legacy_Bucket", s3_addressing_style="path").s3_bucket == \
        "Legacy_Bucket"
