"""Configuration: built-in defaults < config.toml < environment < command-line flags.

Loaded and validated once by `load_config` into one frozen `Config`. Every error is a `ConfigError`
whose message is one line naming the key and where its value came from.

Environment:

- Names kept from the Electric proxy (`_LEGACY_ENV`): `DATABASE_URL`, `PG_PROXY_PORT`,
  `PG_PROXY_PASSWORD` (a non-empty value also selects `auth.mode = "password"` unless the mode is set
  explicitly by environment or flag) and `LOG_LEVEL`. An empty legacy variable counts as unset.
- `ELECTRIC_PROXY_<SECTION>_<KEY>` for every key; it wins over the legacy name. Here an empty value is
  a value (the empty string, or an empty list).
- Secrets (`_SECRET_KEYS`) may be given as `<VAR>_FILE`, naming a file whose stripped contents are
  the value.
- Any other `ELECTRIC_PROXY_*` variable is an error, unless listed in `NON_CONFIG_ENV`.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from proxy.errors import ConfigError
from proxy.log import FORMATS, LEVELS, MASK, redact_url

CONFIG_ENV = "ELECTRIC_PROXY_CONFIG"
ENV_PREFIX = "ELECTRIC_PROXY_"
DEFAULT_CONFIG_FILE = "config.toml"
MAX_MESSAGE_BYTES = 1073741824
# ELECTRIC_PROXY_* variables that are not configuration keys (and so are not typos).
NON_CONFIG_ENV = frozenset({CONFIG_ENV})


# --- the configuration object ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenConfig:
    address: str = "0.0.0.0"
    port: int = 65432
    workers: int = 1
    max_client_connections: int = 0  # 0 = unlimited
    startup_timeout_ms: int = 10000
    max_message_bytes: int = MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str = ""
    connect_timeout_ms: int = 5000


@dataclass(frozen=True, slots=True)
class AuthConfig:
    mode: str = "passthrough"  # passthrough | password | auth_query
    password: str = ""
    allow_md5: bool = False
    database: str = ""  # non-empty: pins the upstream database in password mode
    application_name: str = ""  # non-empty: pins the upstream application_name
    failure_delay_ms: int = 250  # first failed login from an address answered this late, then doubled
    failure_delay_max_ms: int = 5000


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: str = ""
    key_file: str = ""
    client_mode: str = "allow"  # disable | allow | require (refuse plaintext clients)

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    address: str = "0.0.0.0"
    port: int = 9432
    loop_stall_timeout_ms: int = 10000  # /healthz fails when the event loop is stuck this long


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    drain_timeout_ms: int = 30000


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "logfmt"


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    schema: str = "electric"
    databases: tuple[str, ...] = ()  # empty: the database named in the upstream URL
    version_tables: tuple[str, ...] = ()  # "framework=table" or "framework=schema.table"
    admin_url: str = ""  # empty: the catalog is installed with upstream.url
    owner_role: str = "electric_owner"  # the NOLOGIN role that owns the catalog where it can

    def version_table_overrides(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.version_tables)


@dataclass(frozen=True, slots=True)
class GuardConfig:
    enabled: bool = True
    do_blocks: str = "reject"
    # "reject": refuse statements that may be DDL and cannot be read while tables are electrified.
    on_parse_error: str = "reject"


@dataclass(frozen=True, slots=True)
class DriftConfig:
    enabled: bool = True
    interval_ms: int = 30000
    mode: str = "detect"
    block_scope: str = "electrified"  # what `mode = "block"` protects: "electrified" tables or "all"


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """The read-only web console on the metrics listener (proxy/console/)."""

    enabled: str = "auto"  # "auto": on only when the metrics listener is bound to loopback
    path_prefix: str = ""  # where a reverse proxy mounts the listener, e.g. "/ops/proxy"
    user: str = ""  # non-empty: HTTP basic auth with `password`
    password: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    listen: ListenConfig = field(default_factory=ListenConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    log: LogConfig = field(default_factory=LogConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    @property
    def upstream_configured(self) -> bool:
        return bool(self.upstream.url)


# --- key tables -----------------------------------------------------------------------------------

_SECTIONS: dict[str, type[Any]] = typing.get_type_hints(Config)


def _kind(hint: Any) -> type:
    return tuple if typing.get_origin(hint) is tuple else typing.cast(type, hint)


# "section.key" -> int | bool | str | tuple (tuple = list of strings), in declaration order.
_KINDS: dict[str, type] = {
    f"{section}.{name}": _kind(hint)
    for section, cls in _SECTIONS.items()
    for name, hint in typing.get_type_hints(cls).items()
}
_SECRET_KEYS = frozenset({"upstream.url", "auth.password", "catalog.admin_url", "console.password"})
# Keys that take true, false or "auto": a TOML boolean is read as its word.
_AUTO_BOOL_KEYS = frozenset({"console.enabled"})
# A non-empty legacy password (PG_PROXY_PASSWORD) also selects auth.mode = "password": see load_config.
_LEGACY_ENV: dict[str, str] = {
    "DATABASE_URL": "upstream.url",
    "PG_PROXY_PORT": "listen.port",
    "PG_PROXY_PASSWORD": "auth.password",
    "LOG_LEVEL": "log.level",
}


def env_var(key: str) -> str:
    """The `ELECTRIC_PROXY_<SECTION>_<KEY>` variable of a "section.key"."""
    return ENV_PREFIX + key.replace(".", "_").upper()


_PREFIXED_ENV: dict[str, str] = {env_var(key): key for key in _KINDS}


class _Setting(NamedTuple):
    value: object
    source: str  # "built-in default", a file path, an environment variable or a flag


_Layer = dict[str, _Setting]


def _error(key: str, problem: str, source: str) -> ConfigError:
    return ConfigError(f"{key} {problem} (from {source})")


def _shown(key: str, value: object) -> str:
    return "" if key in _SECRET_KEYS else f", got {value!r}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]}?" if close else ""


# --- type coercion --------------------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_KIND_NAMES = {int: "an integer", bool: "a boolean", str: "a string", tuple: "a list of strings"}


def _from_text(kind: type, text: str) -> object:
    """Parse an environment or flag string as `kind`; ValueError when it does not fit."""
    if kind is int:
        return int(text.strip(), 10)
    if kind is bool:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(text)
    if kind is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def _fits(kind: type, value: object) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is tuple:
        return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    return isinstance(value, kind)


def _coerce(key: str, value: object, source: str, *, text: bool) -> _Setting:
    kind = _KINDS[key]
    if key in _AUTO_BOOL_KEYS and isinstance(value, bool):
        value = "true" if value else "false"
    if text and isinstance(value, str) and kind is not str:
        try:
            value = _from_text(kind, value)
        except ValueError:
            raise _error(key, f"must be {_KIND_NAMES[kind]}{_shown(key, value)}", source) from None
    if not _fits(kind, value):
        raise _error(key, f"must be {_KIND_NAMES[kind]}{_shown(key, value)}", source)
    if kind is tuple:
        value = tuple(typing.cast(Iterable[str], value))
    return _Setting(value, source)


# --- layers ---------------------------------------------------------------------------------------


def _default_layer() -> _Layer:
    layer: _Layer = {}
    for key in _KINDS:
        section, name = key.split(".")
        layer[key] = _Setting(getattr(_SECTIONS[section](), name), "built-in default")
    return layer


def _find_config_file(path: str | Path | None, env: Mapping[str, str]) -> tuple[Path, str] | None:
    """The file to read and how it was chosen, or None when there is none."""
    if path is not None:
        return Path(path), "--config"
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), CONFIG_ENV
    local = Path(DEFAULT_CONFIG_FILE)
    return (local, "./config.toml") if local.is_file() else None


def _file_layer(path: Path, chosen_by: str) -> _Layer:
    source = str(path)
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source} (from {chosen_by}): {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid TOML in config file {source}: {exc}") from None
    layer: _Layer = {}
    for section, table in document.items():
        if section not in _SECTIONS:
            hint = _did_you_mean(section, _SECTIONS)
            raise ConfigError(f"unknown section [{section}] in {source}{hint}")
        if not isinstance(table, dict):
            raise ConfigError(f"{section} must be a [{section}] table in {source}")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in _KINDS:
                raise ConfigError(f"unknown key {key} in {source}{_did_you_mean(key, _KINDS)}")
            layer[key] = _coerce(key, value, source, text=False)
    return layer


def _read_secret_file(key: str, var: str, filename: str) -> str:
    try:
        return Path(filename).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise _error(key, f"cannot be read from file {filename}: {reason}", var) from None


def _env_value(env: Mapping[str, str], var: str, key: str, *, empty_is_unset: bool) -> _Setting | None:
    """The value of `var` (or of `var`_FILE for a secret), or None when neither is set."""
    file_var = var + "_FILE"
    value = env.get(var)
    if value is not None and empty_is_unset and not value:
        value = None
    filename = env.get(file_var) if key in _SECRET_KEYS else None
    if filename is not None and empty_is_unset and not filename:
        filename = None
    if value is not None and filename is not None:
        raise _error(key, f"is set by both {var} and {file_var}; set only one", var)
    if filename is not None:
        return _coerce(key, _read_secret_file(key, file_var, filename), file_var, text=True)
    if value is not None:
        return _coerce(key, value, var, text=True)
    return None


def _legacy_layer(env: Mapping[str, str]) -> _Layer:
    layer: _Layer = {}
    for var, key in _LEGACY_ENV.items():
        setting = _env_value(env, var, key, empty_is_unset=True)
        if setting is not None:
            layer[key] = setting
    return layer


def _check_env_names(env: Mapping[str, str]) -> None:
    known = set(_PREFIXED_ENV) | NON_CONFIG_ENV | {env_var(key) + "_FILE" for key in _SECRET_KEYS}
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and var not in known:
            raise ConfigError(f"unknown environment variable {var}{_did_you_mean(var, known)}")


def _prefixed_layer(env: Mapping[str, str]) -> _Layer:
    _check_env_names(env)
    layer: _Layer = {}
    for var, key in _PREFIXED_ENV.items():
        setting = _env_value(env, var, key, empty_is_unset=False)
        if setting is not None:
            layer[key] = setting
    return layer


def _override_layer(overrides: Mapping[str, object], labels: Mapping[str, str]) -> _Layer:
    layer: _Layer = {}
    for key, value in overrides.items():
        source = labels.get(key, "command line")
        if key not in _KINDS:
            raise ConfigError(f"unknown key {key} (from {source}){_did_you_mean(key, _KINDS)}")
        layer[key] = _coerce(key, value, source, text=True)
    return layer


# --- validation -----------------------------------------------------------------------------------

_Check = Callable[[Any], str | None]  # returns the problem, or None when the value is fine


def _between(low: int, high: int) -> _Check:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def _at_least(low: int) -> _Check:
    return lambda value: None if value >= low else f"must be at least {low}"


def _one_of(*choices: str) -> _Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]{0,62}")


def _identifier(value: str) -> str | None:
    if _IDENTIFIER.fullmatch(value):
        return None
    return "must be a lower-case SQL identifier of at most 63 characters"


_ROLE_NAME = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")


def _role_name(value: str) -> str | None:
    if _ROLE_NAME.fullmatch(value):
        return None
    return "must be a lower-case SQL identifier of at most 63 characters, not starting with pg_"


def _database_names(value: tuple[str, ...]) -> str | None:
    return None if all(value) else "must not contain empty names"


def _version_tables(value: tuple[str, ...]) -> str | None:
    from proxy.ddl.versions import VersionRecognizer

    pairs = [item.split("=", 1) for item in value]
    if any(len(pair) != 2 or not all(pair) for pair in pairs):
        return 'entries must read "framework=table" or "framework=schema.table"'
    try:
        VersionRecognizer(overrides={k: v for k, v in pairs})
    except ValueError as exc:
        return str(exc)
    return None


_LIBPQ_SAFE_REASON = re.compile(r'invalid connection option "\w+"')


def _conninfo(value: str) -> str | None:
    if not value:
        return None
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        # libpq echoes pieces of the string, which may hold a password: show only known-safe reasons.
        reason = str(exc).strip()
        detail = f" ({reason})" if _LIBPQ_SAFE_REASON.fullmatch(reason) else ""
        return f"must be a postgres:// or postgresql:// URL or a key=value connection string{detail}"
    return None


_PATH_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def _path_prefix(value: str) -> str | None:
    if _PATH_PREFIX.fullmatch(value):
        return None
    return 'must be empty or a URL path such as "/ops/proxy" (no trailing slash)'


def _auto_bool(value: str) -> str:
    word = value.strip().lower()
    return "true" if word in _TRUE else "false" if word in _FALSE else word


_PORT = _between(0, 65535)
_POSITIVE = _at_least(1)

_CHECKS: dict[str, _Check] = {
    "listen.address": _not_empty,
    "listen.port": _PORT,
    "listen.workers": _at_least(1),
    "listen.max_client_connections": _at_least(0),
    "listen.startup_timeout_ms": _POSITIVE,
    "listen.max_message_bytes": _between(1024, MAX_MESSAGE_BYTES + 4),
    "upstream.url": _conninfo,
    "upstream.connect_timeout_ms": _POSITIVE,
    "auth.mode": _one_of("passthrough", "password", "auth_query"),
    "auth.failure_delay_ms": _between(0, 60000),
    "auth.failure_delay_max_ms": _between(0, 60000),
    "tls.client_mode": _one_of("disable", "allow", "require"),
    "metrics.address": _not_empty,
    "metrics.port": _PORT,
    "metrics.loop_stall_timeout_ms": _POSITIVE,
    "shutdown.drain_timeout_ms": _POSITIVE,
    "log.level": _one_of(*LEVELS),
    "log.format": _one_of(*FORMATS),
    "catalog.schema": _identifier,
    "catalog.databases": _database_names,
    "catalog.version_tables": _version_tables,
    "catalog.admin_url": _conninfo,
    "catalog.owner_role": _role_name,
    "guard.do_blocks": _one_of("reject", "allow"),
    "guard.on_parse_error": _one_of("forward", "reject"),
    "drift.interval_ms": _POSITIVE,
    "drift.mode": _one_of("detect", "block", "off"),
    "drift.block_scope": _one_of("electrified", "all"),
    "console.enabled": _one_of("auto", "true", "false"),
    "console.path_prefix": _path_prefix,
}


def _log_level(value: str) -> str:
    level = value.lower()
    return "warning" if level == "warn" else level


# Applied before the checks: values accepted in more than one spelling.
_NORMALIZE: dict[str, Callable[[Any], object]] = {"log.level": _log_level, "console.enabled": _auto_bool}


def _check_keys(settings: _Layer) -> None:
    for key, check in _CHECKS.items():
        value, source = settings[key]
        problem = check(value)
        if problem is not None:
            raise _error(key, problem + _shown(key, value), source)


def _check_tls(settings: _Layer) -> None:
    cert, key = settings["tls.cert_file"], settings["tls.key_file"]
    if bool(cert.value) != bool(key.value):
        given, missing = (
            ("tls.cert_file", "tls.key_file") if cert.value else ("tls.key_file", "tls.cert_file")
        )
        raise _error(given, f"is set but {missing} is not; set both or neither", settings[given].source)
    for name in ("tls.cert_file", "tls.key_file"):
        _check_readable(name, settings[name])
    mode = settings["tls.client_mode"]
    if mode.value == "require" and not cert.value:
        raise _error("tls.client_mode", "is require but no tls.cert_file is set", mode.source)


def _check_readable(key: str, setting: _Setting) -> None:
    filename = typing.cast(str, setting.value)
    if not filename:
        return
    try:
        with open(filename, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise _error(key, f"cannot be read: {filename}: {exc.strerror}", setting.source) from None


def _check_password_mode(settings: _Layer) -> None:
    mode = settings["auth.mode"]
    if mode.value == "password" and not settings["auth.password"].value:
        raise ConfigError(
            f"auth.password must be set when auth.mode is password (auth.mode from {mode.source})"
        )


def _check_console_auth(settings: _Layer) -> None:
    user, password = settings["console.user"], settings["console.password"]
    if bool(user.value) != bool(password.value):
        given, missing = ("console.user", "console.password")
        if not user.value:
            given, missing = missing, given
        raise _error(given, f"is set but {missing} is not; set both or neither", settings[given].source)


def _validate(settings: _Layer) -> None:
    _check_keys(settings)
    _check_tls(settings)
    _check_password_mode(settings)
    _check_console_auth(settings)


# --- public API -----------------------------------------------------------------------------------


def _build(settings: _Layer) -> Config:
    sections: dict[str, dict[str, object]] = {section: {} for section in _SECTIONS}
    for key, setting in settings.items():
        section, name = key.split(".")
        sections[section][name] = setting.value
    return Config(**{name: _SECTIONS[name](**values) for name, values in sections.items()})


def _select_password_mode(legacy: _Layer, explicit: Iterable[_Layer]) -> None:
    """PG_PROXY_PASSWORD selects password mode, unless the mode is set by environment or flag."""
    password = legacy.get("auth.password")
    if password is None or not password.value:
        return
    if not any("auth.mode" in layer for layer in explicit):
        legacy["auth.mode"] = _Setting("password", password.source)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    override_sources: Mapping[str, str] | None = None,
) -> Config:
    """Load defaults < config file < environment < `overrides` into one validated `Config`.

    `path` is the config file; without it `$ELECTRIC_PROXY_CONFIG`, then `./config.toml` when present.
    `overrides` maps "section.key" to a value (strings are parsed as in the environment);
    `override_sources` names where each came from (e.g. "--listen") for error messages.
    Raises `ConfigError` with a one-line message naming the key and its source.
    """
    env = os.environ if env is None else env
    settings = _default_layer()
    found = _find_config_file(path, env)
    if found is not None:
        settings.update(_file_layer(*found))
    legacy, prefixed = _legacy_layer(env), _prefixed_layer(env)
    flags = _override_layer(overrides or {}, override_sources or {})
    _select_password_mode(legacy, explicit=(prefixed, flags))
    for layer in (legacy, prefixed, flags):
        settings.update(layer)
    for key, normalize in _NORMALIZE.items():
        settings[key] = settings[key]._replace(value=normalize(settings[key].value))
    _validate(settings)
    return _build(settings)


def parse_host_port(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """Parse "HOST:PORT", ":PORT", "[IPv6]:PORT" or a bare "PORT"; ConfigError when malformed."""
    invalid = ConfigError(f"invalid address {text!r}: expected HOST:PORT, :PORT or [IPv6]:PORT")
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or not rest.startswith(":"):
            raise invalid
        port = rest[1:]
    elif text.isdigit():
        host, port = "", text
    else:
        host, colon, port = text.rpartition(":")
        if not colon or ":" in host:
            raise invalid
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise invalid
    return host or default_host, int(port)


def _toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_string(str(item)) for item in value) + "]"
    return _toml_string(str(value))


_URL_KEYS = frozenset({"upstream.url", "catalog.admin_url"})
_PASSWORD_KEYS = frozenset({"auth.password", "console.password"})


def _masked(key: str, value: object) -> object:
    if key in _URL_KEYS:
        return redact_url(typing.cast(str, value))
    if key in _PASSWORD_KEYS and value:
        return MASK
    return value


def render_config(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective configuration as TOML; passwords are shown as **** unless `mask_secrets` is off."""
    lines: list[str] = []
    for section in _SECTIONS:
        lines.append(f"[{section}]")
        for item in fields(getattr(config, section)):
            key = f"{section}.{item.name}"
            value = getattr(getattr(config, section), item.name)
            shown = _masked(key, value) if mask_secrets else value
            lines.append(f"{item.name} = {_toml_value(shown)}")
        lines.append("")
    return "\n".join(lines)


def find_config_file(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, str] | None:
    """The config file `load_config` reads and what chose it (`--config`, the environment, or
    ./config.toml), or None when it reads none."""
    return _find_config_file(path, os.environ if env is None else env)
