"""Logging setup and the one place that hides secrets in text meant for people.

Three formats, chosen by `[log] format`; each writes one line per event:

- `logfmt` (the default): ``ts=2026-01-01T00:00:00.000Z level=info logger=proxy.net.session
  msg="client disconnected" c=12 peer=10.0.0.1:5000``; a traceback goes into an `exc` field.
- `text`: ``2026-01-01T00:00:00Z INFO proxy.net.session c=12 message``, for people at a terminal;
  a traceback follows on its own lines.
- `json`: one object per line with `ts`, `level`, `logger`, `msg` and every `extra` field.

Every line of a session carries its connection id `c` (and `peer`). What the proxy logs at INFO
never holds a query's text or parameters: those appear nowhere in the logs.

Passwords never reach a log line: `extra` fields whose name mentions a password or secret are masked,
and Postgres URLs or ``password=...`` pairs inside messages and values are masked as well.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from proxy.errors import ConfigError

MASK = "****"
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("logfmt", "text", "json")

_URI_PREFIXES = ("postgres://", "postgresql://")
_SECRET_PARAMS = frozenset({"password", "sslpassword"})
_SECRET_NAME = re.compile(r"password|passwd|secret", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?i)\b(postgres(?:ql)?://[^\s:/@]*:)[^\s/?#]*@")
_CONNINFO_PASSWORD = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def redact_url(url: str) -> str:
    """Return `url` (a postgres:// URL or a key=value conninfo) with every password replaced by ****.

    Anything that cannot be parsed is replaced whole: a secret is never shown by accident.
    """
    if not url:
        return url
    try:
        if url.lower().startswith(_URI_PREFIXES):
            return _redact_uri(url)
        return _redact_conninfo(url)
    except ValueError:
        return MASK


def _redact_uri(url: str) -> str:
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":" + MASK
    netloc = f"{userinfo}{at}{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_conninfo(conninfo: str) -> str:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(conninfo)
    except ProgrammingError as exc:
        raise ValueError("unparseable conninfo") from exc
    masked: dict[str, Any] = {}
    for key, value in params.items():
        if key in _SECRET_PARAMS:
            masked[key] = MASK
        elif key == "dbname" and isinstance(value, str) and ("=" in value or "://" in value):
            masked[key] = redact_url(value)  # libpq expands a dbname that is itself a conninfo
        else:
            masked[key] = value
    return make_conninfo("", **masked)


def scrub(text: str) -> str:
    """Mask Postgres URL passwords and ``password=...`` pairs anywhere in free text."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _CONNINFO_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}", text)


def _extras(record: logging.LogRecord) -> Iterator[tuple[str, object]]:
    for key, value in vars(record).items():
        if key in _RECORD_ATTRS or key.startswith("_"):
            continue
        if _SECRET_NAME.search(key):
            yield key, MASK
        elif isinstance(value, str):
            yield key, scrub(value)
        else:
            yield key, value


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '="' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _utc(created: float, *, millis: bool) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    if millis:
        stamp += f".{int(created * 1000) % 1000:03d}"
    return stamp + "Z"


class TextFormatter(logging.Formatter):
    """``TS LEVEL LOGGER k=v ... message``, with any traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        fields = [f"{key}={_text_value(value)}" for key, value in _extras(record)]
        head = [_utc(record.created, millis=False), record.levelname, record.name, *fields]
        line = " ".join([*head, scrub(record.getMessage())])
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + scrub(self.formatStack(record.stack_info))
        return line


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg=... k=v ...``: one line per event, whatever it holds."""

    def format(self, record: logging.LogRecord) -> str:
        fields: list[tuple[str, object]] = [
            ("ts", _utc(record.created, millis=True)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", scrub(record.getMessage())),
            *_extras(record),
        ]
        if record.exc_info:
            fields.append(("exc", scrub(self.formatException(record.exc_info))))
        if record.stack_info:
            fields.append(("stack", scrub(self.formatStack(record.stack_info))))
        return " ".join(f"{key}={_text_value(value)}" for key, value in fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": _utc(record.created, millis=True),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in _extras(record):
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


_FORMATTERS: dict[str, type[logging.Formatter]] = {
    "logfmt": LogfmtFormatter,
    "text": TextFormatter,
    "json": JsonFormatter,
}


_installed: list[logging.Handler] = []  # the handler this module added, replaced on reconfiguration


def configure_logging(level: str, fmt: str) -> None:
    """Send every log record to stderr at `level` (debug|info|warning|error) in `fmt`
    (logfmt|text|json)."""
    if level.lower() not in LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in _FORMATTERS:
        raise ConfigError(f"log.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = logging.getLogger()
    while _installed:
        root.removeHandler(_installed.pop())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FORMATTERS[fmt]())
    root.addHandler(handler)
    _installed.append(handler)
    root.setLevel(level.upper())
