"""`electric-proxy drift`: check the live schema against the recorded baseline, or accept drift.

    electric-proxy drift [--json]                              exit 0 in sync, 2 on drift, 1 on error
    electric-proxy drift accept [--all | IDENTITY...] --by NAME

Both run one scan (proxy/catalog/drift_watch.py) on the upstream database, waiting for a
proxy's scan in progress to finish first. `accept` adopts the live state of the named objects
(identities as `drift` prints them; a renamed object may be named by its old identity too) and
records who accepted what. Every failure, configuration errors included, exits 1: 2 means drift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any, Final

from proxy.errors import CatalogError, ConfigError

EXIT_IN_SYNC: Final = 0
EXIT_ERROR: Final = 1
EXIT_DRIFT: Final = 2
PROG: Final = "electric-proxy drift"
HELP: Final = "compare the live schema with the recorded one (exit 2 on drift); `drift accept` adopts drift"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from proxy.cli import add_database_arguments

    add_database_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(dest="drift_command", metavar="accept")
    accept = commands.add_parser(
        "accept", help="adopt drift as the new baseline", description="adopt drift as the new baseline"
    )
    # SUPPRESS: flags given before `accept` keep their values (a subparser's defaults would
    # overwrite them).
    quiet = argparse.SUPPRESS
    accept.add_argument(
        "identities", nargs="*", metavar="IDENTITY", help="objects to accept, as `drift` names them"
    )
    accept.add_argument("--all", action="store_true", default=quiet, help="accept every drifted object")
    accept.add_argument("--by", metavar="NAME", default=quiet, help="who accepts (recorded)")
    accept.add_argument("--json", action="store_true", default=quiet, help="print JSON instead of text")
    for flag in ("--config", "--upstream"):
        accept.add_argument(flag, default=quiet, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    try:
        request = _request(args)
        report = asyncio.run(_execute(args, request))
    except (ConfigError, CatalogError) as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except _Failure as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if request is not None:
        _print_accepted(report, args.json)
        return EXIT_IN_SYNC
    _print_report(report, args.json)
    return EXIT_IN_SYNC if report.in_sync else EXIT_DRIFT


class _Failure(Exception):
    pass


_Request = tuple[list[str] | None, str] | None  # (identities or None for all, by); None: check


def _request(args: argparse.Namespace) -> _Request:
    if getattr(args, "drift_command", None) != "accept":
        return None
    identities: list[str] = list(args.identities)
    every = bool(getattr(args, "all", False))
    if every == bool(identities):
        raise _Failure("drift accept needs --all or the identities to accept, not both")
    by = getattr(args, "by", None)
    if not by or not by.strip():
        raise _Failure("drift accept needs --by NAME: who accepts the drift")
    return (None if every else identities), by


async def _execute(args: argparse.Namespace, request: _Request) -> Any:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from proxy.catalog import drift_watch
    from proxy.cli import config_from_args
    from proxy.log import scrub

    config = config_from_args(args)
    if not config.upstream_configured:
        raise ConfigError(
            "no upstream database configured: give --upstream URL, set DATABASE_URL, "
            "or set [upstream] url in the config file"
        )
    # Scans write the drift tables: the catalog's owner (catalog.admin_url) when there is one.
    url = config.upstream.url
    database = str(conninfo_to_dict(url).get("dbname") or "the upstream database")
    if config.catalog.admin_url:
        url = make_conninfo(config.catalog.admin_url, dbname=database)
    schema = config.catalog.schema
    timeout = max(1, math.ceil(config.upstream.connect_timeout_ms / 1000))
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=timeout)
    except psycopg.Error as exc:
        raise _Failure(f"cannot connect to the upstream database: {scrub(_first_line(exc))}") from None
    async with conn:
        try:
            await conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
            cursor = await conn.execute(
                b"SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (f"{schema}.drift_state",)
            )
            row = await cursor.fetchone()
            if not (row and row[0]):
                raise _Failure(
                    f"database {database} has no drift baseline (catalog schema {schema}): "
                    "the proxy installs it when it starts"
                )
            if request is None:
                return await drift_watch.scan(conn, schema, wait=True)
            identities, by = request
            return await drift_watch.accept(conn, schema, identities, by)
        except psycopg.Error as exc:
            raise _Failure(f"cannot check drift in database {database}: {scrub(_first_line(exc))}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str))
        return
    if report.in_sync:
        print("in sync: the schema matches the recorded migrations")
        return
    print(f"drift: {len(report.objects)} object(s) differ from the recorded schema")
    for item in report.objects:
        print(f"  {item['severity']:<8} {item['change']:<8} {item['object_type']} {item['identity']}")
        for line in _detail_lines(item):
            print(f"           {line}")


def _detail_lines(item: dict[str, Any]) -> list[str]:
    detail = item.get("detail") or {}
    lines: list[str] = []
    if detail.get("expected_identity"):
        lines.append(f"was {detail['expected_identity']}")
    if item["change"] in ("modified", "renamed"):
        for name, values in (detail.get("attributes") or {}).items():
            lines.append(
                f"{name}: expected {_short(values.get('expected'))}, actual {_short(values.get('actual'))}"
            )
    attribution = item.get("attribution")
    if attribution:
        lines.append(
            f"by {attribution.get('role')} ({attribution.get('application_name') or '-'}, "
            f"{attribution.get('client_addr') or 'local'}): {_short(attribution.get('statement'))}"
        )
    return lines


def _short(value: object, limit: int = 80) -> str:
    text = " ".join(json.dumps(value, ensure_ascii=False).split()) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_accepted(report: Any, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {"accepted": report.accepted, **report.to_json()}, indent=2, ensure_ascii=False, default=str
            )
        )
        return
    print(f"accepted {len(report.accepted)} object(s) as the new baseline")
    for item in report.accepted:
        print(f"  {item['change']:<8} {item['object_type']} {item['identity']}")
    if not report.in_sync:
        print(f"{len(report.objects)} drifted object(s) remain")
