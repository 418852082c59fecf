from __future__ import annotations

import json
import logging
import logging.config
import sys

import pytest

from imagegate.config import Settings
from imagegate.errors import ConfigError
from imagegate.logs import JsonFormatter, formatter, granian_logging


def record(message: str = "task %s succeeded", *args: object, **extra: object,
           ) -> logging.LogRecord:
    rec = logging.LogRecord("imagegate.tasks", logging.INFO, __file__, 1, message,
                            args or ("t1",), None)
    rec.__dict__.update(extra)
    rec.created = 1_700_000_000.25
    return rec


def test_a_json_line_has_the_time_level_logger_message_and_the_task_fields() -> None:
    line = JsonFormatter().format(record(task_id="t1", model="nano-banana-2", other="x"))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2023-11-14T22:13:20.250Z", "level": "INFO", "logger": "imagegate.tasks",
        "message": "task t1 succeeded", "task_id": "t1", "model": "nano-banana-2"}


def test_a_json_line_carries_the_exception_with_its_traceback() -> None:
    try:
        raise ValueError("a broken image")
    except ValueError:
        rec = record("task %s crashed", delivery_id="msg_1", route="gemini")
        rec.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(rec))
    assert parsed["delivery_id"] == "msg_1" and parsed["route"] == "gemini"
    assert parsed["exception"].startswith("Traceback")
    assert "ValueError: a broken image" in parsed["exception"]
    assert "task_id" not in parsed


def test_the_text_format_is_unchanged() -> None:
    line = formatter("text").format(record(task_id="t1"))
    assert line.endswith(" INFO imagegate.tasks: task t1 succeeded")
    assert "task_id" not in line


def test_granian_gets_the_json_formatter_or_keeps_its_own() -> None:
    assert granian_logging("text") is None
    config = granian_logging("json")
    assert config is not None
    configurator = logging.config.DictConfigurator(config)
    made = configurator.configure_formatter(dict(config["formatters"]["json"]))
    assert isinstance(made, JsonFormatter)
    assert set(config["loggers"]) == {"_granian", "granian.access"}


def test_log_format_must_be_text_or_json() -> None:
    assert Settings.load(env={"IMAGEGATE_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="log_format must be text or json, got 'xml'"):
        Settings.load(env={"IMAGEGATE_LOG_FORMAT": "xml"})
