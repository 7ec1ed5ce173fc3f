"""Configuration: precedence, environment names, secrets, validation and rendering."""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path

import pytest

from proxy.config import (
    Config,
    ListenConfig,
    env_var,
    load_config,
    parse_host_port,
    render_config,
)
from proxy.errors import ConfigError
from proxy.log import redact_url, scrub

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
SECRET = "s3cr3t-Pa55"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./config.toml is picked up unless a test writes one."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "proxy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def value(config: Config, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)  # type: ignore[arg-type]
    message = caught.value.message
    assert "\n" not in message
    return message


# --- defaults and the shipped config.toml ---------------------------------------------------------


def test_defaults_without_file_or_environment() -> None:
    config = load_config(env={})
    assert config == Config()
    assert config.listen.address == "0.0.0.0"
    assert config.listen.port == 65432
    assert config.metrics.port == 9432
    assert config.catalog.schema == "electric"
    assert config.catalog.databases == ()
    assert not config.upstream_configured
    assert not config.tls.enabled


def test_config_is_frozen() -> None:
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen.port = 1  # type: ignore[misc]
    assert dataclasses.replace(config, listen=ListenConfig(port=1)).listen.port == 1


def test_repo_config_toml_loads_to_the_defaults() -> None:
    assert load_config(REPO_CONFIG, env={}) == Config()


def test_repo_config_toml_lists_every_key_with_its_env_var() -> None:
    document = tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8"))
    listed = {f"{section}.{key}" for section, table in document.items() for key in table}
    expected = {
        f"{section.name}.{item.name}"
        for section in dataclasses.fields(Config)
        for item in dataclasses.fields(getattr(Config(), section.name))
    }
    assert listed == expected
    lines = REPO_CONFIG.read_text(encoding="utf-8").splitlines()
    section = ""
    for previous, line in itertools.pairwise(lines):
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key = f"{section}.{line.split('=')[0].strip()}"
            assert previous.startswith("# ") and env_var(key) in previous, key


def test_dot_config_toml_in_working_directory_is_used(tmp_path: Path) -> None:
    write(tmp_path, "[listen]\nport = 7000\n", name="config.toml")
    assert load_config(env={}).listen.port == 7000


def test_electric_proxy_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[listen]\nport = 7001\n")
    write(tmp_path, "[listen]\nport = 7000\n", name="config.toml")
    assert load_config(env={"ELECTRIC_PROXY_CONFIG": str(path)}).listen.port == 7001


def test_explicit_path_beats_electric_proxy_config(tmp_path: Path) -> None:
    explicit = write(tmp_path, "[listen]\nport = 7002\n", name="a.toml")
    other = write(tmp_path, "[listen]\nport = 7003\n", name="b.toml")
    config = load_config(explicit, env={"ELECTRIC_PROXY_CONFIG": str(other)})
    assert config.listen.port == 7002


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert str(missing) in config_error(path=missing, env={})
    message = config_error(env={"ELECTRIC_PROXY_CONFIG": str(missing)})
    assert str(missing) in message and "ELECTRIC_PROXY_CONFIG" in message


# --- precedence -----------------------------------------------------------------------------------

PRECEDENCE = [
    # key, file TOML value, env var, env text, flag value, expected file / env / flag values
    ("listen.port", "7000", "ELECTRIC_PROXY_LISTEN_PORT", "7001", 7002, (7000, 7001, 7002)),
    ("listen.address", '"10.0.0.1"', "ELECTRIC_PROXY_LISTEN_ADDRESS", "10.0.0.2", "10.0.0.3", None),
    ("upstream.url", '"postgres://a/x"', "DATABASE_URL", "postgres://b/y", "postgres://c/z", None),
    ("log.level", '"debug"', "LOG_LEVEL", "error", "warning", None),
    ("drift.interval_ms", "1000", "ELECTRIC_PROXY_DRIFT_INTERVAL_MS", "2000", "3000", (1000, 2000, 3000)),
    ("metrics.enabled", "false", "ELECTRIC_PROXY_METRICS_ENABLED", "yes", False, (False, True, False)),
    ("guard.do_blocks", '"allow"', "ELECTRIC_PROXY_GUARD_DO_BLOCKS", "reject", "allow", None),
    (
        "catalog.databases",
        '["a"]',
        "ELECTRIC_PROXY_CATALOG_DATABASES",
        "b, c",
        ["d"],
        (("a",), ("b", "c"), ("d",)),
    ),
]


@pytest.mark.parametrize(("key", "in_file", "var", "in_env", "flag", "expected"), PRECEDENCE)
def test_default_file_env_flag_precedence(
    tmp_path: Path,
    key: str,
    in_file: str,
    var: str,
    in_env: str,
    flag: object,
    expected: tuple[object, object, object] | None,
) -> None:
    section, name = key.split(".")
    path = write(tmp_path, f"[{section}]\n{name} = {in_file}\n")
    from_file, from_env, from_flag = expected or (tomllib.loads(f"v = {in_file}")["v"], in_env, flag)
    assert value(load_config(env={}), key) == value(Config(), key)
    assert value(load_config(path, env={}), key) == from_file
    assert value(load_config(path, env={var: in_env}), key) == from_env
    assert value(load_config(path, env={var: in_env}, overrides={key: flag}), key) == from_flag


def test_flag_strings_are_parsed_like_the_environment() -> None:
    config = load_config(env={}, overrides={"listen.workers": "3", "guard.enabled": "off"})
    assert config.listen.workers == 3
    assert config.guard.enabled is False


# --- environment names ----------------------------------------------------------------------------

LEGACY = [
    ("DATABASE_URL", "postgres://u@h/db", "upstream.url", "postgres://u@h/db"),
    ("PG_PROXY_PORT", "5433", "listen.port", 5433),
    ("LOG_LEVEL", "debug", "log.level", "debug"),
]


@pytest.mark.parametrize(("var", "text", "key", "expected"), LEGACY)
def test_legacy_env_names(var: str, text: str, key: str, expected: object) -> None:
    assert value(load_config(env={var: text}), key) == expected


@pytest.mark.parametrize(("var", "text", "key", "expected"), LEGACY)
def test_electric_proxy_name_wins_over_legacy_name(var: str, text: str, key: str, expected: object) -> None:
    winner = {"upstream.url": "postgres://other/db", "listen.port": "6000", "log.level": "error"}[key]
    config = load_config(env={var: text, env_var(key): winner})
    assert str(value(config, key)) == winner


def test_empty_legacy_variable_counts_as_unset() -> None:
    assert load_config(env={"PG_PROXY_PORT": "", "DATABASE_URL": ""}) == Config()


def test_log_level_is_case_insensitive_and_accepts_warn() -> None:
    assert load_config(env={"LOG_LEVEL": "INFO"}).log.level == "info"
    assert load_config(env={"LOG_LEVEL": "warn"}).log.level == "warning"


def test_every_key_has_an_electric_proxy_variable() -> None:
    for section in dataclasses.fields(Config):
        for item in dataclasses.fields(getattr(Config(), section.name)):
            assert env_var(f"{section.name}.{item.name}") == (
                f"ELECTRIC_PROXY_{section.name.upper()}_{item.name.upper()}"
            )
    assert (
        load_config(env={"ELECTRIC_PROXY_LISTEN_MAX_CLIENT_CONNECTIONS": "5"}).listen.max_client_connections
        == 5
    )


def test_pg_proxy_password_selects_password_mode() -> None:
    config = load_config(env={"PG_PROXY_PASSWORD": SECRET})
    assert config.auth.mode == "password"
    assert config.auth.password == SECRET


def test_pg_proxy_password_beats_mode_from_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[auth]\nmode = "passthrough"\n')
    assert load_config(path, env={"PG_PROXY_PASSWORD": SECRET}).auth.mode == "password"


def test_explicit_mode_from_env_or_flag_beats_pg_proxy_password() -> None:
    env = {"PG_PROXY_PASSWORD": SECRET, "ELECTRIC_PROXY_AUTH_MODE": "passthrough"}
    assert load_config(env=env).auth.mode == "passthrough"
    config = load_config(env={"PG_PROXY_PASSWORD": SECRET}, overrides={"auth.mode": "passthrough"})
    assert config.auth.mode == "passthrough"
    assert config.auth.password == SECRET


def test_empty_pg_proxy_password_does_not_select_password_mode() -> None:
    assert load_config(env={"PG_PROXY_PASSWORD": ""}).auth.mode == "passthrough"


def test_new_style_password_variable_does_not_select_the_mode() -> None:
    config = load_config(env={"ELECTRIC_PROXY_AUTH_PASSWORD": SECRET})
    assert config.auth.mode == "passthrough"
    assert config.auth.password == SECRET


# --- secrets from files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("DATABASE_URL_FILE", "upstream.url"),
        ("ELECTRIC_PROXY_UPSTREAM_URL_FILE", "upstream.url"),
        ("PG_PROXY_PASSWORD_FILE", "auth.password"),
        ("ELECTRIC_PROXY_AUTH_PASSWORD_FILE", "auth.password"),
    ],
)
def test_secret_from_file_is_stripped(tmp_path: Path, var: str, key: str) -> None:
    secret = f"postgres://u:{SECRET}@h/db" if key == "upstream.url" else SECRET
    path = write(tmp_path, f"  {secret}\n\n", name="secret")
    assert value(load_config(env={var: str(path)}), key) == secret


def test_pg_proxy_password_file_selects_password_mode(tmp_path: Path) -> None:
    path = write(tmp_path, SECRET + "\n", name="secret")
    assert load_config(env={"PG_PROXY_PASSWORD_FILE": str(path)}).auth.mode == "password"


def test_secret_file_that_cannot_be_read(tmp_path: Path) -> None:
    message = config_error(env={"DATABASE_URL_FILE": str(tmp_path / "missing")})
    assert "upstream.url" in message and "DATABASE_URL_FILE" in message


def test_secret_and_secret_file_together_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, SECRET, name="secret")
    env = {"ELECTRIC_PROXY_AUTH_PASSWORD": SECRET, "ELECTRIC_PROXY_AUTH_PASSWORD_FILE": str(path)}
    message = config_error(env=env)
    assert "auth.password" in message and "ELECTRIC_PROXY_AUTH_PASSWORD_FILE" in message
    assert SECRET not in message


def test_file_variant_exists_only_for_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, "6000", name="port")
    assert "ELECTRIC_PROXY_LISTEN_PORT_FILE" in config_error(
        env={"ELECTRIC_PROXY_LISTEN_PORT_FILE": str(path)}
    )


# --- type coercion --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [(word, True) for word in ("true", "1", "yes", "on", "TRUE", " On ")]
    + [(word, False) for word in ("false", "0", "no", "off", "False")],
)
def test_boolean_words(text: str, expected: bool) -> None:
    assert load_config(env={"ELECTRIC_PROXY_AUTH_ALLOW_MD5": text}).auth.allow_md5 is expected


def test_list_from_comma_separated_text() -> None:
    env = {"ELECTRIC_PROXY_CATALOG_DATABASES": " app , ,other,"}
    assert load_config(env=env).catalog.databases == ("app", "other")
    assert load_config(env={"ELECTRIC_PROXY_CATALOG_DATABASES": ""}).catalog.databases == ()


@pytest.mark.parametrize(
    ("var", "text", "key"),
    [
        ("ELECTRIC_PROXY_LISTEN_PORT", "65k", "listen.port"),
        ("PG_PROXY_PORT", "x", "listen.port"),
        ("ELECTRIC_PROXY_LISTEN_WORKERS", "", "listen.workers"),
        ("ELECTRIC_PROXY_GUARD_ENABLED", "maybe", "guard.enabled"),
    ],
)
def test_text_that_does_not_fit_the_type(var: str, text: str, key: str) -> None:
    message = config_error(env={var: text})
    assert key in message and var in message


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[listen]\nport = "6000"\n', "listen.port"),
        ("[listen]\nport = true\n", "listen.port"),
        ('[metrics]\nenabled = "yes"\n', "metrics.enabled"),
        ("[catalog]\ndatabases = [1]\n", "catalog.databases"),
        ("[log]\nlevel = 3\n", "log.level"),
    ],
)
def test_toml_values_must_have_the_right_type(tmp_path: Path, toml: str, key: str) -> None:
    path = write(tmp_path, toml)
    message = config_error(path=path, env={})
    assert key in message and str(path) in message


# --- validation -----------------------------------------------------------------------------------

INVALID_ENV = [
    ("ELECTRIC_PROXY_LISTEN_PORT", "65536", "listen.port"),
    ("PG_PROXY_PORT", "-1", "listen.port"),
    ("ELECTRIC_PROXY_METRICS_PORT", "70000", "metrics.port"),
    ("ELECTRIC_PROXY_LISTEN_WORKERS", "0", "listen.workers"),
    ("ELECTRIC_PROXY_LISTEN_MAX_CLIENT_CONNECTIONS", "-1", "listen.max_client_connections"),
    ("ELECTRIC_PROXY_LISTEN_STARTUP_TIMEOUT_MS", "0", "listen.startup_timeout_ms"),
    ("ELECTRIC_PROXY_UPSTREAM_CONNECT_TIMEOUT_MS", "0", "upstream.connect_timeout_ms"),
    ("ELECTRIC_PROXY_SHUTDOWN_DRAIN_TIMEOUT_MS", "-5", "shutdown.drain_timeout_ms"),
    ("ELECTRIC_PROXY_DRIFT_INTERVAL_MS", "0", "drift.interval_ms"),
    ("ELECTRIC_PROXY_LISTEN_MAX_MESSAGE_BYTES", "1023", "listen.max_message_bytes"),
    ("ELECTRIC_PROXY_LISTEN_MAX_MESSAGE_BYTES", "1073741829", "listen.max_message_bytes"),
    ("ELECTRIC_PROXY_AUTH_MODE", "trust", "auth.mode"),
    ("ELECTRIC_PROXY_AUTH_MODE", "password", "auth.password"),
    ("ELECTRIC_PROXY_LOG_LEVEL", "verbose", "log.level"),
    ("LOG_LEVEL", "trace", "log.level"),
    ("ELECTRIC_PROXY_LOG_FORMAT", "xml", "log.format"),
    ("ELECTRIC_PROXY_GUARD_DO_BLOCKS", "maybe", "guard.do_blocks"),
    ("ELECTRIC_PROXY_GUARD_ON_PARSE_ERROR", "ignore", "guard.on_parse_error"),
    ("ELECTRIC_PROXY_DRIFT_MODE", "fix", "drift.mode"),
    ("ELECTRIC_PROXY_CATALOG_SCHEMA", "", "catalog.schema"),
    ("ELECTRIC_PROXY_CATALOG_SCHEMA", 'evil"; drop', "catalog.schema"),
    ("ELECTRIC_PROXY_LISTEN_ADDRESS", "", "listen.address"),
    ("DATABASE_URL", "http://example.com/db", "upstream.url"),
    ("DATABASE_URL", "localhost:5432", "upstream.url"),
    ("ELECTRIC_PROXY_UPSTREAM_URL", "host=h nonsense=1", "upstream.url"),
    ("ELECTRIC_PROXY_TLS_CERT_FILE", "/nonexistent/cert.pem", "tls.cert_file"),
]


@pytest.mark.parametrize(("var", "text", "key"), INVALID_ENV)
def test_invalid_value_names_key_and_source(var: str, text: str, key: str) -> None:
    message = config_error(env={var: text})
    assert key in message
    assert var in message


def test_invalid_value_from_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[drift]\nmode = "sometimes"\n')
    message = config_error(path=path, env={})
    assert "drift.mode" in message and str(path) in message


def test_invalid_value_from_flag_names_the_flag() -> None:
    message = config_error(
        env={}, overrides={"listen.workers": 0}, override_sources={"listen.workers": "--workers"}
    )
    assert "listen.workers" in message and "--workers" in message


def test_boundary_values_are_accepted() -> None:
    env = {
        "ELECTRIC_PROXY_LISTEN_PORT": "0",
        "ELECTRIC_PROXY_METRICS_PORT": "65535",
        "ELECTRIC_PROXY_LISTEN_MAX_MESSAGE_BYTES": "1024",
    }
    config = load_config(env=env)
    assert (config.listen.port, config.metrics.port, config.listen.max_message_bytes) == (0, 65535, 1024)
    big = load_config(env={"ELECTRIC_PROXY_LISTEN_MAX_MESSAGE_BYTES": str(1073741824 + 4)})
    assert big.listen.max_message_bytes == 1073741828


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@h:5432/db",
        "postgresql://h/db?sslmode=require",
        "host=h dbname=db user=u",
        "postgres://",
    ],
)
def test_valid_upstream_urls(url: str) -> None:
    config = load_config(env={"DATABASE_URL": url})
    assert config.upstream.url == url
    assert config.upstream_configured


def test_invalid_upstream_url_error_hides_the_password() -> None:
    message = config_error(env={"DATABASE_URL": f"http://u:{SECRET}@h/db"})
    assert "upstream.url" in message and SECRET not in message


def test_password_mode_needs_a_password(tmp_path: Path) -> None:
    path = write(tmp_path, '[auth]\nmode = "password"\n')
    message = config_error(path=path, env={})
    assert "auth.password" in message and str(path) in message
    assert load_config(path, env={"ELECTRIC_PROXY_AUTH_PASSWORD": SECRET}).auth.mode == "password"


def test_tls_files_both_or_neither(tmp_path: Path) -> None:
    cert = write(tmp_path, "cert", name="cert.pem")
    key = write(tmp_path, "key", name="key.pem")
    only_cert = config_error(env={"ELECTRIC_PROXY_TLS_CERT_FILE": str(cert)})
    assert "tls.cert_file" in only_cert and "tls.key_file" in only_cert
    only_key = config_error(env={"ELECTRIC_PROXY_TLS_KEY_FILE": str(key)})
    assert "tls.key_file" in only_key and "ELECTRIC_PROXY_TLS_KEY_FILE" in only_key
    both = {"ELECTRIC_PROXY_TLS_CERT_FILE": str(cert), "ELECTRIC_PROXY_TLS_KEY_FILE": str(key)}
    config = load_config(env=both)
    assert config.tls.enabled and config.tls.key_file == str(key)


def test_tls_file_must_exist(tmp_path: Path) -> None:
    cert = write(tmp_path, "cert", name="cert.pem")
    path = write(tmp_path, f'[tls]\ncert_file = "{cert}"\nkey_file = "{tmp_path / "missing.pem"}"\n')
    message = config_error(path=path, env={})
    assert "tls.key_file" in message and str(path) in message


# --- typo safety ----------------------------------------------------------------------------------


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[listen]\nprot = 1\n")
    message = config_error(path=path, env={})
    assert "listen.prot" in message and str(path) in message and "listen.port" in message


def test_unknown_section_in_file(tmp_path: Path) -> None:
    message = config_error(path=write(tmp_path, "[lsiten]\nport = 1\n"), env={})
    assert "lsiten" in message and "listen" in message


def test_top_level_key_in_file(tmp_path: Path) -> None:
    assert "port" in config_error(path=write(tmp_path, "port = 1\n"), env={})


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[listen\nport = \n")
    assert str(path) in config_error(path=path, env={})


def test_unknown_electric_proxy_variable() -> None:
    message = config_error(env={"ELECTRIC_PROXY_LISTEN_PROT": "1"})
    assert "ELECTRIC_PROXY_LISTEN_PROT" in message and "ELECTRIC_PROXY_LISTEN_PORT" in message


def test_unrelated_variables_are_ignored() -> None:
    assert load_config(env={"PATH": "/bin", "PGPASSWORD": "x", "ELECTRICITY": "on"}) == Config()


def test_unknown_override_key() -> None:
    assert "listen.prot" in config_error(env={}, overrides={"listen.prot": 1})


# --- host:port ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6000", ("127.0.0.1", 6000)),
        (":6000", ("0.0.0.0", 6000)),
        ("6000", ("0.0.0.0", 6000)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:6000", ("::1", 6000)),
        ("[::]:65535", ("::", 65535)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


def test_parse_host_port_default_host() -> None:
    assert parse_host_port(":1", default_host="::") == ("::", 1)


@pytest.mark.parametrize(
    "text",
    ["", "host", "host:", "host:port", "host:65536", "::1:6000", "[::1]", "[::1]6000", "[]:1", "h:-1", "h:٣"],
)
def test_parse_host_port_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_host_port(text)


# --- rendering and secrets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgres://user:{SECRET}@db.example:5432/app",
        f"postgresql://user:{SECRET}@h1:5432,h2:5433/app?sslmode=require",
        f"postgres://h/app?password={SECRET}&sslmode=require",
        f"host=db.example user=user password={SECRET} dbname=app",
        f"host=db.example password='{SECRET} with spaces' dbname=app",
        f"dbname=postgres://u:{SECRET}@h/app",
    ],
)
def test_render_masks_secrets(url: str) -> None:
    config = load_config(env={"DATABASE_URL": url, "PG_PROXY_PASSWORD": SECRET + "-proxy"})
    text = render_config(config)
    assert SECRET not in text
    assert "****" in text
    rendered = tomllib.loads(text)
    assert rendered["auth"]["password"] == "****"
    assert rendered["auth"]["mode"] == "password"


def test_render_keeps_the_rest_of_the_url() -> None:
    config = load_config(
        env={"DATABASE_URL": f"postgres://user:{SECRET}@db.example:5432/app?sslmode=require"}
    )
    assert tomllib.loads(render_config(config))["upstream"]["url"] == (
        "postgres://user:****@db.example:5432/app?sslmode=require"
    )


def test_render_without_masking_round_trips(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"postgres://u:{SECRET}@h/db",
        "PG_PROXY_PASSWORD": 'tricky "quoted" \\ pass\tword',
        "ELECTRIC_PROXY_CATALOG_DATABASES": "app,other",
        "ELECTRIC_PROXY_AUTH_APPLICATION_NAME": "naïve\x7f",
        "ELECTRIC_PROXY_LISTEN_PORT": "0",
    }
    config = load_config(env=env)
    path = write(tmp_path, render_config(config, mask_secrets=False), name="rendered.toml")
    assert load_config(path, env={}) == config


def test_render_of_defaults_is_the_default_document() -> None:
    rendered = tomllib.loads(render_config(Config()))
    assert rendered == tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8"))
    assert rendered["auth"]["password"] == ""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", ""),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgres://u:pw@h/db", "postgres://u:****@h/db"),
        ("postgres://:pw@h/db", "postgres://:****@h/db"),
        ("postgres://u:p@w@h/db", "postgres://u:****@h/db"),
        ("POSTGRESQL://u:pw@h/db", "postgresql://u:****@h/db"),
        ("postgres://h/db?password=pw&sslmode=require", "postgres://h/db?password=****&sslmode=require"),
        ("not a conninfo password=pw", "****"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_conninfo() -> None:
    redacted = redact_url("host=h  password=pw sslpassword='key pass' dbname=db")
    assert sorted(redacted.split()) == ["dbname=db", "host=h", "password=****", "sslpassword=****"]


def test_scrub_free_text() -> None:
    text = f"connect postgres://u:{SECRET}@h/db failed; conninfo host=h password={SECRET} port=1"
    scrubbed = scrub(text)
    assert SECRET not in scrubbed
    assert "postgres://u:****@h/db" in scrubbed and "port=1" in scrubbed


# --- the catalog's installing role ----------------------------------------------------------------


def test_catalog_admin_url_and_owner_role_defaults() -> None:
    config = load_config(env={})
    assert config.catalog.admin_url == ""
    assert config.catalog.owner_role == "electric_owner"


def test_catalog_admin_url_from_env_file_and_flag(tmp_path: Path) -> None:
    url = f"postgres://admin:{SECRET}@h/app"
    assert load_config(env={"ELECTRIC_PROXY_CATALOG_ADMIN_URL": url}).catalog.admin_url == url
    secret_file = write(tmp_path, url + "\n", name="admin-url")
    env = {"ELECTRIC_PROXY_CATALOG_ADMIN_URL_FILE": str(secret_file)}
    assert load_config(env=env).catalog.admin_url == url
    document = write(tmp_path, '[catalog]\nadmin_url = "postgres://file/app"\nowner_role = "cat_owner"\n')
    config = load_config(document, env={})
    assert (config.catalog.admin_url, config.catalog.owner_role) == ("postgres://file/app", "cat_owner")


def test_catalog_admin_url_is_masked_and_checked() -> None:
    config = load_config(env={"ELECTRIC_PROXY_CATALOG_ADMIN_URL": f"postgres://admin:{SECRET}@h/app"})
    text = render_config(config)
    assert SECRET not in text
    assert tomllib.loads(text)["catalog"]["admin_url"] == "postgres://admin:****@h/app"
    message = config_error(env={"ELECTRIC_PROXY_CATALOG_ADMIN_URL": f"http://admin:{SECRET}@h/app"})
    assert "catalog.admin_url" in message and SECRET not in message


@pytest.mark.parametrize("role", ["Owner", "pg_owner", "has space", ""])
def test_catalog_owner_role_must_be_a_plain_identifier(role: str) -> None:
    message = config_error(env={"ELECTRIC_PROXY_CATALOG_OWNER_ROLE": role})
    assert "catalog.owner_role" in message
