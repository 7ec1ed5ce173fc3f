"""Command line: `electric-proxy <command> ...`.

Adding a command takes one handler function and one entry in `COMMANDS`: the entry names the
handler, its help line and the function that adds its arguments (`add_config_arguments` gives the
usual `--config/--listen/--upstream/--metrics-listen/--workers`; `config_from_args` turns them into a
`Config`). A `ConfigError` from any command prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from proxy import __version__, cli_drift
from proxy.catalog import render
from proxy.config import Config, load_config, parse_host_port, render_config
from proxy.errors import CatalogError, ConfigError
from proxy.log import configure_logging, scrub

if TYPE_CHECKING:
    import psycopg

    from proxy.catalog import store

PROG = "electric-proxy"
EXIT_CONFIG = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a reader that went away


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say where the configuration and the upstream database are."""
    parser.add_argument("--config", metavar="PATH", help="config file (default: $ELECTRIC_PROXY_CONFIG)")
    parser.add_argument(
        "--upstream", metavar="URL", help="upstream Postgres URL or conninfo (default: $DATABASE_URL)"
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every command that needs the whole configuration accepts."""
    add_database_arguments(parser)
    parser.add_argument("--listen", metavar="HOST:PORT", help="client listener address")
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

    # Commands that only read the catalog have no listener flags (add_database_arguments).
    listen, metrics_listen, workers = (
        getattr(args, k, None) for k in ("listen", "metrics_listen", "workers")
    )
    if listen is not None:
        host, port = _address("--listen", listen)
        put("listen.address", host, "--listen")
        put("listen.port", port, "--listen")
    if metrics_listen is not None:
        host, port = _address("--metrics-listen", metrics_listen)
        put("metrics.address", host, "--metrics-listen")
        put("metrics.port", port, "--metrics-listen")
    if args.upstream is not None:
        put("upstream.url", args.upstream, "--upstream")
    if workers is not None:
        put("listen.workers", workers, "--workers")
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
    serve: Callable[..., int] = server.serve
    return serve(config, reload=lambda: config_from_args(args))  # SIGHUP reads file and env again


def _cmd_check_config(args: argparse.Namespace) -> int:
    from proxy.config import find_config_file

    config = config_from_args(args)
    found = find_config_file(args.config)
    print(f"# loaded from {found[0]} (chosen by {found[1]})" if found else "# no config file loaded")
    print(render_config(config), end="")
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    from proxy import cli_health  # its own module (issue 10)

    return cli_health.run(args)


def _add_health_arguments(parser: argparse.ArgumentParser) -> None:
    from proxy import cli_health

    cli_health.add_arguments(parser)


# --- commands that read the catalog (DESIGN.md §5) --------------------------------------------------
# They connect with the upstream URL. No upstream configured: a ConfigError (exit 2). A database
# that cannot be reached or read: one line on stderr, exit 1. Passwords are never printed: the
# messages are Postgres's or libpq's, scrubbed all the same.

EXIT_FAILURE = 1
_T = TypeVar("_T")


class _Failure(Exception):
    """A catalog command could not do its work: print the message, exit 1."""


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_listing_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arguments(parser)
    _add_json_flag(parser)


def _add_show_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arguments(parser)
    parser.add_argument("migration", metavar="MIGRATION", help="a migration version, or else a migration id")
    _add_json_flag(parser)


def _add_schema_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--at", metavar="VERSION", help="a migration version, or else a migration id")
    which.add_argument(
        "--diff",
        nargs=2,
        metavar=("FROM", "TO"),
        help="what changed between two migrations (versions, or else ids), object by object",
    )
    _add_json_flag(parser)


def _error_text(exc: BaseException) -> str:
    """One line from an error, passwords masked."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return scrub(lines[0] if lines else type(exc).__name__)


def _read_catalog(args: argparse.Namespace, read: Callable[[psycopg.Connection[Any], str], _T]) -> _T:
    """Connect to the upstream database and run `read(conn, catalog_schema)`."""
    config = config_from_args(args)
    if not config.upstream_configured:
        raise ConfigError(
            "no upstream database configured: give --upstream URL, set DATABASE_URL, "
            "or set [upstream] url in the config file"
        )
    # Imported late: psycopg is not needed by the other commands.
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from proxy.catalog import store

    database = str(conninfo_to_dict(config.upstream.url).get("dbname") or "the upstream database")
    timeout = max(1, math.ceil(config.upstream.connect_timeout_ms / 1000))
    try:
        conn = psycopg.connect(
            config.upstream.url, autocommit=True, connect_timeout=timeout, application_name=f"{PROG} (cli)"
        )
    except psycopg.Error as exc:
        raise _Failure(f"cannot connect to the upstream database: {_error_text(exc)}") from None
    schema = config.catalog.schema
    with conn:
        try:
            # DESIGN.md, security rules: the proxy's own connections use an empty search_path.
            conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
            if not store.history_installed(conn, schema):
                raise _Failure(
                    f"database {database} has no migration history (catalog schema {schema}): "
                    "the proxy installs it when it starts"
                )
            return read(conn, schema)
        except psycopg.Error as exc:
            raise _Failure(f"cannot read the catalog of database {database}: {_error_text(exc)}") from None


def _catalog_command(run: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    """A handler that prints a _Failure or a catalog error as one line and exits 1."""

    def handler(args: argparse.Namespace) -> int:
        try:
            run(args)
        except (_Failure, CatalogError) as exc:
            print(f"{PROG}: {_error_text(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        return 0

    return handler


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(headers), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    for line in cells:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    text = "-" if value is None else str(value)
    return " ".join(text.split())  # one line per row, whatever the value holds


def _history(args: argparse.Namespace) -> None:
    from proxy.catalog import store

    migrations = _read_catalog(args, store.history)
    if args.json:
        _print_json(migrations)
        return
    if not migrations:
        print("no migrations recorded")
        return
    _print_table(
        ("ID", "VERSION", "FRAMEWORK", "COMMITTED AT", "USER", "STATEMENTS"),
        [
            (m["id"], m["version"], m["framework"], m["committed_at"], m["user"], len(m["statements"]))
            for m in migrations
        ],
    )


def _show(args: argparse.Namespace) -> None:
    from proxy.catalog import store

    reference: str = args.migration
    migration = _read_catalog(args, lambda conn, schema: store.show(conn, reference, schema))
    if migration is None:
        raise _Failure(f"no migration with version or id {reference!r}")
    if args.json:
        _print_json(migration)
        return
    _print_migration(migration)


def _print_migration(migration: store.MigrationDetail) -> None:
    source = migration["version_source"]
    if migration["framework"] is not None:
        source += f", {migration['framework']}"
    if migration["version_tie"] not in (None, "transaction"):
        source += f", written {migration['version_tie']}"
    print(f"migration {migration['id']}")
    details = (
        ("version", f"{migration['version']} ({source})"),
        ("started", migration["started_at"]),
        ("committed", migration["committed_at"]),
        ("user", migration["user"]),
        ("application", migration["application_name"]),
        ("client", migration["client_addr"]),
        ("proxy", migration["proxy_instance"]),
        ("backend pid", migration["backend_pid"]),
    )
    for label, value in details:
        print(f"  {label:<12}{_cell(value)}")
    print("statements")
    for statement in migration["statements"]:
        lines = statement["sql"].strip().splitlines() or [""]
        print(f"  {statement['seq']:>3}  {statement['tag'] or '-'}: {lines[0]}")
        for line in lines[1:]:
            print(f"       {line}")
    print("objects")
    for item in migration["objects"]:
        identity = render.qualified(item["schema"], item["name"])
        if item["definition"] is None:
            print(f"  {item['object_type']} {identity}: gone")
            continue
        print(f"  {item['kind']} {identity}")
        for line in render.render(item["definition"]).splitlines():
            print(f"    {line}")


def _electrified(args: argparse.Namespace) -> None:
    from proxy.catalog import store

    tables = _read_catalog(args, store.electrified)
    if args.json:
        _print_json(tables)
        return
    if not tables:
        print("no electrified tables")
        return
    _print_table(
        ("SCHEMA", "TABLE", "SINCE MIGRATION"),
        [(t["schema"], t["table"], t["since_migration"]) for t in tables],
    )


def _schema(args: argparse.Namespace) -> None:
    if args.diff is not None:
        _schema_diff(args, args.diff[0], args.diff[1])
        return
    from proxy.catalog import store

    version: str = args.at
    snapshot = _read_catalog(args, lambda conn, schema: store.schema_at(conn, version, schema))
    if args.json:
        _print_json(snapshot)
        return
    print(f"-- schema after migration {snapshot['migration_id']} (version {snapshot['version']})")
    tables = {(o["schema"], o["name"]) for o in snapshot["objects"] if "indexes" in o["definition"]}
    for item in snapshot["objects"]:
        definition = item["definition"]
        if (definition.get("table_schema"), definition.get("table_name")) in tables:
            continue  # an index: its table's CREATE TABLE is followed by it already
        identity = render.qualified(item["schema"], item["name"])
        print(f"\n-- {item['kind']} {identity}, as of {item['migration_version']}")
        print(render.render(item["definition"]))


def _schema_diff(args: argparse.Namespace, first: str, second: str) -> None:
    from proxy.catalog import store

    def read(conn: psycopg.Connection[Any], schema: str) -> tuple[store.SchemaAt, store.SchemaAt]:
        return store.schema_at(conn, first, schema), store.schema_at(conn, second, schema)

    before, after = _read_catalog(args, read)
    changes = render.diff(render.keyed(before["objects"]), render.keyed(after["objects"]))
    if args.json:
        _print_json(
            {
                "from": {"migration_id": before["migration_id"], "version": before["version"]},
                "to": {"migration_id": after["migration_id"], "version": after["version"]},
                "changes": [change.as_json() for change in changes],
            }
        )
        return
    print(
        f"-- from migration {before['migration_id']} ({before['version']}) "
        f"to migration {after['migration_id']} ({after['version']})"
    )
    if not changes:
        print("no changes")
    for line in render.diff_lines(changes):
        print(line)


class Command(NamedTuple):
    handler: Callable[[argparse.Namespace], int]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] = add_config_arguments


COMMANDS: dict[str, Command] = {
    "serve": Command(_cmd_serve, "run the proxy"),
    "health": Command(
        _cmd_health, "exit 0 when the proxy is alive (or ready, with --ready)", _add_health_arguments
    ),
    "check-config": Command(_cmd_check_config, "validate the configuration and print it, secrets masked"),
    "history": Command(
        _catalog_command(_history), "list the recorded migrations, oldest first", _add_listing_arguments
    ),
    "show": Command(
        _catalog_command(_show),
        "show one migration: statements and the resulting definitions",
        _add_show_arguments,
    ),
    "electrified": Command(
        _catalog_command(_electrified), "list the electrified tables", _add_listing_arguments
    ),
    "schema": Command(
        _catalog_command(_schema),
        "the recorded schema as of a migration, or what changed between two",
        _add_schema_arguments,
    ),
    "drift": Command(cli_drift.run, cli_drift.HELP, cli_drift.add_arguments),
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


def _closed_stdout() -> int:
    """The reader went away (`history | head`): stop quietly, as `cat` does. Python would
    report the broken pipe again when it flushes stdout at exit, so stdout points at
    /dev/null from here on."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a real file (tests capture it): nothing will be flushed to it
    return EXIT_BROKEN_PIPE


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
    except BrokenPipeError:
        return _closed_stdout()
    except ConfigError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
