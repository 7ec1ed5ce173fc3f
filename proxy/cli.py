"""Command line: `electric-proxy <command> ...`.

Adding a command takes one handler function and one entry in `COMMANDS`: the entry names the
handler, its help line and the function that adds its arguments (`add_config_arguments` gives the
usual `--config/--listen/--upstream/--metrics-listen/--workers`; `config_from_args` turns them into a
`Config`). A `ConfigError` from any command prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from proxy import __version__
from proxy.config import Config, load_config, parse_host_port, render_config
from proxy.errors import ConfigError
from proxy.log import configure_logging

PROG = "electric-proxy"
EXIT_CONFIG = 2


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every command that needs the configuration accepts."""
    parser.add_argument("--config", metavar="PATH", help="config file (default: $ELECTRIC_PROXY_CONFIG)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="client listener address")
    parser.add_argument("--upstream", metavar="URL", help="upstream Postgres URL or conninfo")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT", help="metrics and health address")
    parser.add_argument("--workers", metavar="N", help="number of worker processes")


def _address(flag: str, text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc.message}") from None


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the configuration with the command-line flags applied on top."""
    overrides: dict[str, object] = {}
    sources: dict[str, str] = {}

    def put(key: str, value: object, flag: str) -> None:
        overrides[key] = value
        sources[key] = flag

    if args.listen is not None:
        host, port = _address("--listen", args.listen)
        put("listen.address", host, "--listen")
        put("listen.port", port, "--listen")
    if args.metrics_listen is not None:
        host, port = _address("--metrics-listen", args.metrics_listen)
        put("metrics.address", host, "--metrics-listen")
        put("metrics.port", port, "--metrics-listen")
    if args.upstream is not None:
        put("upstream.url", args.upstream, "--upstream")
    if args.workers is not None:
        put("listen.workers", args.workers, "--workers")
    return load_config(args.config, overrides=overrides, override_sources=sources)


def _cmd_serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    configure_logging(config.log.level, config.log.format)
    try:
        # Imported late: the server pulls in uvloop and the whole proxy, which other commands never need.
        server = importlib.import_module("proxy.net.server")
    except ModuleNotFoundError as exc:
        if exc.name not in {"proxy.net.server", "proxy.net"}:
            raise
        print(f"{PROG}: serve is not available in this build", file=sys.stderr)
        return 1
    serve: Callable[[Config], int] = server.serve
    return serve(config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    print(render_config(config_from_args(args)), end="")
    return 0


class Command(NamedTuple):
    handler: Callable[[argparse.Namespace], int]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] = add_config_arguments


COMMANDS: dict[str, Command] = {
    "serve": Command(_cmd_serve, "run the proxy"),
    "check-config": Command(_cmd_check_config, "validate the configuration and print it, secrets masked"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Postgres proxy with a migration guard")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
    return parser


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return _exit_code(exc.code)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return COMMANDS[args.command].handler(args)
    except ConfigError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
