"""The command line (`proxy.cli`) and the logging setup it installs (`proxy.log`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import proxy
from proxy import cli
from proxy.config import Config
from proxy.log import configure_logging

SECRET = "s3cr3t-Pa55"


pytestmark = pytest.mark.usefixtures("no_config_env")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """`serve` and the logging tests install a handler on the root logger; take it away again."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Stand in for `proxy.net.server`; records the configs `serve` was called with."""
    calls: list[Config] = []

    def serve(config: Config, reload: object = None) -> int:
        calls.append(config)
        return 0

    module = types.ModuleType("proxy.net.server")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "proxy.net.server", module)
    return calls


def one_error_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("electric-proxy: ")
    return lines[0]


# --- check-config ---------------------------------------------------------------------------------


def test_check_config_prints_the_effective_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    document = tomllib.loads(out)
    assert document["listen"] == {
        "address": "0.0.0.0",
        "port": 65432,
        "workers": 1,
        "max_client_connections": 0,
        "startup_timeout_ms": 10000,
        "max_message_bytes": 1073741824,
    }


def test_check_config_applies_flags(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "check-config",
        "--listen",
        "127.0.0.1:6000",
        "--metrics-listen",
        "[::1]:9000",
        "--upstream",
        f"postgres://u:{SECRET}@h/db",
        "--workers",
        "4",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    document = tomllib.loads(out)
    assert (document["listen"]["address"], document["listen"]["port"]) == ("127.0.0.1", 6000)
    assert (document["metrics"]["address"], document["metrics"]["port"]) == ("::1", 9000)
    assert document["listen"]["workers"] == 4
    assert document["upstream"]["url"] == "postgres://u:****@h/db"


def test_check_config_flag_beats_env_beats_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[listen]\nport = 7000\nworkers = 2\n[log]\nlevel = "debug"\n', encoding="utf-8")
    monkeypatch.setenv("PG_PROXY_PORT", "7001")
    assert cli.main(["check-config", "--config", str(path), "--listen", ":7002"]) == 0
    document = tomllib.loads(capsys.readouterr().out)
    assert document["listen"]["port"] == 7002
    assert document["listen"]["workers"] == 2
    assert document["log"]["level"] == "debug"


def test_check_config_masks_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"host=h user=u password={SECRET}")
    monkeypatch.setenv("PG_PROXY_PASSWORD", SECRET)
    assert cli.main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert tomllib.loads(out)["auth"]["mode"] == "password"


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["check-config", "--workers", "0"], {}, "--workers"),
        (["check-config", "--workers", "many"], {}, "--workers"),
        (["check-config", "--listen", "nowhere"], {}, "--listen"),
        (["check-config", "--metrics-listen", "h:99999"], {}, "--metrics-listen"),
        (["check-config", "--upstream", "http://example/db"], {}, "--upstream"),
        (["check-config", "--config", "/nonexistent/config.toml"], {}, "/nonexistent/config.toml"),
        (["check-config"], {"ELECTRIC_PROXY_LISTEN_PROT": "1"}, "ELECTRIC_PROXY_LISTEN_PROT"),
        (["check-config"], {"PG_PROXY_PORT": "99999"}, "PG_PROXY_PORT"),
        (["serve"], {"ELECTRIC_PROXY_AUTH_MODE": "password"}, "auth.password"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert expected in one_error_line(err)


def test_bad_toml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[listen]\nbogus = 1\n", encoding="utf-8")
    assert cli.main(["check-config"]) == 2
    assert "listen.bogus" in one_error_line(capsys.readouterr().err)


# --- serve ----------------------------------------------------------------------------------------


def test_serve_hands_the_config_to_the_server(fake_server: list[Config]) -> None:
    assert cli.main(["serve", "--listen", "127.0.0.1:0", "--upstream", "postgres://h/db"]) == 0
    (config,) = fake_server
    assert (config.listen.address, config.listen.port) == ("127.0.0.1", 0)
    assert config.upstream_configured


def test_serve_returns_the_server_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("proxy.net.server")
    module.serve = lambda config, reload=None: 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "proxy.net.server", module)
    assert cli.main(["serve"]) == 3


def test_serve_config_error_does_not_start_the_server(
    fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--workers", "0"]) == 2
    assert fake_server == []
    assert "listen.workers" in one_error_line(capsys.readouterr().err)


# --- parser ---------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert proxy.__version__ in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "check-config" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "frobnicate" in capsys.readouterr().err


def test_a_command_is_one_handler_and_one_table_entry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(args: argparse.Namespace) -> int:
        print(cli.config_from_args(args).listen.port, args.json)
        return 5

    def arguments(parser: argparse.ArgumentParser) -> None:
        cli.add_config_arguments(parser)
        parser.add_argument("--json", action="store_true")

    monkeypatch.setitem(cli.COMMANDS, "history", cli.Command(handler, "show history", arguments))
    assert cli.main(["history", "--json", "--listen", ":6100"]) == 5
    assert capsys.readouterr().out == "6100 True\n"


# --- logging --------------------------------------------------------------------------------------


@pytest.fixture
def log_stream(capsys: pytest.CaptureFixture[str]) -> types.SimpleNamespace:
    """What `configure_logging`'s handler writes (to the stderr of the moment it is configured)."""
    return types.SimpleNamespace(read=lambda: capsys.readouterr().err)


def test_text_log_format(log_stream: types.SimpleNamespace) -> None:
    configure_logging("info", "text")
    logging.getLogger("proxy.net.session").info("client %s connected", "10.0.0.1", extra={"c": 12})
    logging.getLogger("proxy.net.session").debug("not shown")
    line = log_stream.read().rstrip("\n")
    timestamp, level, logger, rest = line.split(" ", 3)
    assert len(timestamp) == len("2026-01-01T00:00:00Z") and timestamp.endswith("Z")
    assert (level, logger, rest) == ("INFO", "proxy.net.session", "c=12 client 10.0.0.1 connected")


def test_json_log_format(log_stream: types.SimpleNamespace) -> None:
    configure_logging("debug", "json")
    logging.getLogger("proxy.catalog").debug("installed", extra={"c": 3, "schema": "electric"})
    document = json.loads(log_stream.read())
    assert document["level"] == "debug"
    assert document["logger"] == "proxy.catalog"
    assert document["msg"] == "installed"
    assert (document["c"], document["schema"]) == (3, "electric")
    assert document["ts"].endswith("Z")


def test_configuring_twice_keeps_one_handler(log_stream: types.SimpleNamespace) -> None:
    configure_logging("info", "text")
    configure_logging("info", "json")
    logging.getLogger("x").warning("once")
    assert len(log_stream.read().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["logfmt", "text", "json"])
def test_logs_never_carry_passwords(log_stream: types.SimpleNamespace, fmt: str) -> None:
    configure_logging("info", fmt)
    log = logging.getLogger("proxy.net.upstream")
    log.info("connecting to %s", f"postgres://u:{SECRET}@h/db", extra={"password": SECRET})
    log.info("conninfo", extra={"dsn": f"host=h password={SECRET}"})
    try:
        raise RuntimeError(f"failed for postgresql://u:{SECRET}@h/db")
    except RuntimeError:
        log.exception("upstream failed")
    output = log_stream.read()
    assert SECRET not in output
    assert "postgres://u:****@h/db" in output


def test_configure_logging_rejects_unknown_names() -> None:
    from proxy.errors import ConfigError

    with pytest.raises(ConfigError):
        configure_logging("verbose", "text")
    with pytest.raises(ConfigError):
        configure_logging("info", "xml")


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (["history"], {"--config", "--upstream", "--json"}),
        (["electrified"], {"--config", "--upstream", "--json"}),
        (["show", "1"], {"--config", "--upstream", "--json"}),
        (["schema"], {"--config", "--upstream", "--json", "--at", "--diff"}),
    ],
)
def test_catalog_commands_offer_only_the_flags_they_use(
    command: list[str], flags: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([command[0], "--help"]) == 0
    out = capsys.readouterr().out
    offered = {word.rstrip(",") for word in out.split() if word.startswith("--")}
    assert offered == flags | {"--help"}


def test_schema_takes_at_or_diff_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "--at", "1", "--diff", "1", "2"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_check_config_says_which_file_it_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[listen]\nport = 7000\n", encoding="utf-8")
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"# loaded from {path} (chosen by --config)"
    monkeypatch.setenv("ELECTRIC_PROXY_CONFIG", str(path))
    assert cli.main(["check-config"]) == 0
    assert f"# loaded from {path} (chosen by ELECTRIC_PROXY_CONFIG)" in capsys.readouterr().out
    monkeypatch.delenv("ELECTRIC_PROXY_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith("# no config file loaded\n")
