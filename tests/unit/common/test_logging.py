"""Logs are one line per record, plain or JSON, and never carry secret-looking fields."""

from __future__ import annotations

import json
import logging

import pytest

from kairos_common.logging import REDACTED, JsonFormatter, PlainFormatter, configure_logging
from kairos_common.settings import LogSettings


def make_record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("kairos.test", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_hold_the_message_and_fields() -> None:
    line = JsonFormatter("api").format(make_record(post_id="p1", attempt=2))
    entry = json.loads(line)
    assert entry["msg"] == "hello you"
    assert entry["service"] == "api"
    assert entry["level"] == "info"
    assert entry["post_id"] == "p1"
    assert entry["attempt"] == 2


@pytest.mark.parametrize("key", ["access_token", "refresh_token", "secret_key", "authorization"])
def test_secret_looking_fields_are_redacted(key: str) -> None:
    record = make_record(**{key: "hunter2-very-secret"})
    for formatter in (JsonFormatter("api"), PlainFormatter("api")):
        line = formatter.format(record)
        assert "hunter2" not in line
        assert REDACTED in line


def test_configure_logging_writes_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("scheduler", LogSettings(format="json", level="INFO"))
        logging.getLogger("kairos.test").info("claimed", extra={"count": 3})
        logging.getLogger("kairos.test").debug("not shown")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [entry["msg"] for entry in lines] == ["claimed"]
    assert lines[0]["count"] == 3
    assert lines[0]["service"] == "scheduler"
