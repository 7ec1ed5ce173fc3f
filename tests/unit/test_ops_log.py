"""The logfmt format: one line per event, key=value pairs a log shipper can split."""

from __future__ import annotations

import logging
import re
import shlex

import pytest

from proxy.log import configure_logging

SECRET = "hunter2-logfmt"


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    """configure_logging replaces the root handler: put back what was there (pytest's own)."""
    from proxy import log

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    log._installed.clear()


def parse_logfmt(line: str) -> dict[str, str]:
    """key=value pairs; values with spaces are double-quoted (shlex reads them back)."""
    pairs = shlex.split(line, posix=True)
    return dict(pair.split("=", 1) for pair in pairs)


def test_logfmt_is_the_default_and_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.config import load_config

    config = load_config(None, env={})
    assert config.log.format == "logfmt"
    configure_logging("info", config.log.format)
    log = logging.getLogger("proxy.net.session")
    log.info("client %s disconnected", "x", extra={"c": 7, "peer": "10.0.0.1:5000"})
    try:
        raise ValueError(f"boom\nsecond line postgres://u:{SECRET}@h/db")
    except ValueError:
        log.exception("internal error", extra={"c": 8})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first = parse_logfmt(lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert (first["level"], first["logger"], first["msg"]) == (
        "info",
        "proxy.net.session",
        "client x disconnected",
    )
    assert (first["c"], first["peer"]) == ("7", "10.0.0.1:5000")
    assert list(first)[:4] == ["ts", "level", "logger", "msg"]
    second = parse_logfmt(lines[1])
    assert second["level"] == "error" and second["c"] == "8"
    assert "ValueError: boom" in second["exc"] and SECRET not in lines[1]
