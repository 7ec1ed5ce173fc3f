"""The console's configuration and the parts of its WSGI application that need no database."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from proxy.config import Config, load_config, render_config
from proxy.console.app import Console, console_enabled, upstream_label
from proxy.errors import ConfigError

pytestmark = pytest.mark.usefixtures("no_config_env")


def config(env: dict[str, str] | None = None, **overrides: object) -> Config:
    return load_config(None, env=env or {}, overrides=overrides)


# -- [console] -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "enabled", "served"),
    [
        ("0.0.0.0", "auto", False),  # the built-in metrics address: not by default
        ("127.0.0.1", "auto", True),
        ("127.0.0.53", "auto", True),
        ("::1", "auto", True),
        ("localhost", "auto", True),
        ("10.1.2.3", "auto", False),
        ("0.0.0.0", "true", True),
        ("127.0.0.1", "false", False),
    ],
)
def test_enabled_by_default_only_on_loopback(address: str, enabled: str, served: bool) -> None:
    assert console_enabled(config(**{"metrics.address": address, "console.enabled": enabled})) is served


def test_no_console_without_the_metrics_listener() -> None:
    assert not console_enabled(config(**{"metrics.enabled": False, "console.enabled": "true"}))


def test_enabled_reads_toml_booleans_and_environment_words(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[console]\nenabled = true\n")
    assert load_config(file, env={}).console.enabled == "true"
    file.write_text("[console]\nenabled = false\n")
    assert load_config(file, env={}).console.enabled == "false"
    assert config({"ELECTRIC_PROXY_CONSOLE_ENABLED": "yes"}).console.enabled == "true"
    assert config({"ELECTRIC_PROXY_CONSOLE_ENABLED": "AUTO"}).console.enabled == "auto"
    with pytest.raises(ConfigError, match=r"console.enabled must be one of auto, true, false"):
        config({"ELECTRIC_PROXY_CONSOLE_ENABLED": "sometimes"})


def test_password_from_a_file_and_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-console\n")
    loaded = config(
        {"ELECTRIC_PROXY_CONSOLE_USER": "ops", "ELECTRIC_PROXY_CONSOLE_PASSWORD_FILE": str(secret)}
    )
    assert (loaded.console.user, loaded.console.password) == ("ops", "s3cret-console")
    rendered = render_config(loaded)
    assert "s3cret-console" not in rendered and 'password = "****"' in rendered


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"console.user": "ops"}, "console.user is set but console.password is not"),
        ({"console.password": "x"}, "console.password is set but console.user is not"),
        ({"console.path_prefix": "ops/"}, "console.path_prefix must be empty or a URL path"),
        ({"console.path_prefix": "/ops/"}, "console.path_prefix must be empty or a URL path"),
        ({"console.path_prefix": '/a"b'}, "console.path_prefix must be empty or a URL path"),
    ],
)
def test_invalid_console_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(**overrides)


def test_upstream_label_names_no_user_or_password() -> None:
    assert (
        upstream_label("postgresql://app:hunter2@db.internal:6543/shop?sslmode=require")
        == "db.internal:6543/shop"
    )
    assert upstream_label("host=/run/pg dbname=x password=hunter2") == "/run/pg:5432/x"


# -- the application, before any database read -------------------------------------------------------


class Answer:
    status = ""
    headers: dict[str, str]
    body = b""


def call(app: Console, path: str, method: str = "GET", **headers: str) -> Answer:
    answer = Answer()
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": ""}
    environ.update({"HTTP_" + k.upper(): v for k, v in headers.items()})

    def start_response(status: str, header_list: list[tuple[str, str]]) -> None:
        answer.status = status
        answer.headers = dict(header_list)

    body: Iterable[bytes] = app(environ, start_response)
    answer.body = b"".join(body)
    return answer


def fallback(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"metrics: " + environ["PATH_INFO"].encode()]


def console(**overrides: object) -> Console:
    return Console(config(**{"metrics.address": "127.0.0.1", **overrides}), fallback=fallback)


def test_other_paths_go_to_the_metrics_application() -> None:
    app = console()
    for path in ("/metrics", "/healthz", "/consoles", "/"):
        assert call(app, path).body == b"metrics: " + path.encode()


def test_stylesheet_and_security_headers() -> None:
    answer = call(console(), "/console/style.css")
    assert answer.status == "200 OK" and answer.headers["Content-Type"].startswith("text/css")
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "style-src 'self'" in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert b"ul.health" in answer.body


def test_read_only() -> None:
    for method in ("POST", "PUT", "DELETE"):
        answer = call(console(), "/console/", method)
        assert answer.status.startswith("405") and answer.headers["Allow"] == "GET, HEAD"
    head = call(console(), "/console/style.css", "HEAD")
    assert head.status == "200 OK" and head.body == b""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth() -> None:
    app = console(**{"console.user": "ops", "console.password": "pw:with:colons"})
    for header in (
        {},
        {"Authorization": basic("ops", "wrong")},
        {"Authorization": basic("other", "pw:with:colons")},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer x"},
    ):
        answer = call(app, "/console/style.css", **header)
        assert answer.status.startswith("401"), header
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert call(app, "/console/style.css", Authorization=basic("ops", "pw:with:colons")).status == "200 OK"
    assert call(app, "/metrics").status == "200 OK"  # the metrics keep their own access
