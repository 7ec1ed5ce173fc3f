"""The console's WSGI application, mounted under `/console` on the metrics listener.

`mount()` wraps the listener's application: requests under `/console` come here, every other path
goes where it went before. The listener serves one request at a time in its own thread
(metrics.py), so the console keeps one database connection, reused between requests, with
connect and statement timeouts of 2 s that keep a slow catalog from holding the health endpoints
for long.

Access (config `[console]`): `enabled = "auto"` serves the console only when the listener is
bound to a loopback address; `true` on any address, `false` never. `user` and `password` ask for
HTTP basic auth. Pages only read; GET and HEAD are the only methods. The Content-Security-Policy
allows no script at all and styles only from the console's own stylesheet.

Behind a reverse proxy that publishes the listener under a path, links carry that path:
`console.path_prefix` when set, else the `X-Forwarded-Prefix` header of the request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, Final
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from proxy.catalog import store
from proxy.config import Config
from proxy.console import data, pages
from proxy.console.markup import Html
from proxy.log import scrub

logger = logging.getLogger(__name__)

ROOT: Final = "/console"
APPLICATION_NAME: Final = "electric-proxy (console)"
# The listener serves one request at a time: a console page must not hold /healthz for long.
STATEMENT_TIMEOUT_MS: Final = 2000
CONNECT_TIMEOUT_S: Final = 2
_PREFIX: Final = re.compile(r"(/[A-Za-z0-9._~-]+)*")
_MIGRATION_PATH: Final = re.compile(r"migrations/([0-9]{1,18})")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_SECURITY_HEADERS: Final = [
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


def console_enabled(config: Config) -> bool:
    """Whether the console is served: `[console] enabled`, "auto" meaning a loopback listener."""
    setting = config.console.enabled
    if not config.metrics.enabled or setting == "false":
        return False
    return setting == "true" or is_loopback(config.metrics.address)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def mount(server: WSGIServer, config: Config) -> None:
    """Serve the console from `server` (the metrics listener) when the configuration says so."""
    if not console_enabled(config):
        return
    server.set_app(Console(config, fallback=server.get_app()))
    logger.info("console at http://%s:%d%s/", config.metrics.address, config.metrics.port, ROOT)


class Unreachable(Exception):
    """The upstream database cannot be reached; the message is safe to show."""


class Database:
    """One connection to the upstream database, opened on first use, reopened after a failure."""

    def __init__(self, config: Config) -> None:
        self._url = config.upstream.url
        self._timeout = min(CONNECT_TIMEOUT_S, max(1, math.ceil(config.upstream.connect_timeout_ms / 1000)))
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self.label = upstream_label(config.upstream.url)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            conn = self._conn if self._conn is not None and not self._conn.closed else self._connect()
            self._conn = conn
            try:
                yield conn
            except psycopg.errors.QueryCanceled:
                raise  # the statement timeout: the connection is fine, the read failed
            except psycopg.OperationalError as exc:  # the connection is lost: a new one next time
                self.close()
                raise Unreachable(_first_line(exc)) from None

    def _connect(self) -> psycopg.Connection[Any]:
        conninfo = make_conninfo(self._url, application_name=APPLICATION_NAME)
        try:
            conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=self._timeout)
        except psycopg.Error as exc:
            raise Unreachable(_first_line(exc)) from None
        # DESIGN.md, security rules: the proxy's own connections start with an empty search_path.
        conn.execute(b"SELECT pg_catalog.set_config('search_path', '', false)")
        conn.execute(b"SELECT pg_catalog.set_config('TimeZone', 'UTC', false)")
        conn.execute(
            b"SELECT pg_catalog.set_config('statement_timeout', %s, false)", (str(STATEMENT_TIMEOUT_MS),)
        )
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def upstream_label(url: str) -> str:
    """`host:port/database` of a conninfo: what the health strip names, never the user or password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the upstream database"
    host = str(params.get("host") or "localhost").split(",")[0]
    port = str(params.get("port") or "5432").split(",")[0]
    return f"{host}:{port}/{params.get('dbname') or '-'}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return scrub(lines[0] if lines else type(exc).__name__)


class Response:
    def __init__(
        self, body: bytes, status: str = "200 OK", content_type: str = "text/html; charset=utf-8"
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers: list[tuple[str, str]] = []


def html(page: Html, status: str = "200 OK") -> Response:
    return Response(page.encode("utf-8"), status)


class Request:
    def __init__(self, environ: Environ, prefix: str) -> None:
        self.environ = environ
        path = environ.get("PATH_INFO", "") or ""
        self.path = path[len(ROOT) :].strip("/")
        self.params = {
            k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=False).items()
        }
        self.links = pages.Links(prefix)

    def param(self, name: str) -> str | None:
        value = self.params.get(name, "").strip()
        return value or None


class Console:
    """The WSGI application: `/console...` here, anything else to `fallback`."""

    def __init__(
        self, config: Config, fallback: WsgiApp | None = None, database: Database | None = None
    ) -> None:
        self.config = config
        self.schema = config.catalog.schema
        self.fallback = fallback
        self.database = database or Database(config)
        console = config.console
        self._credentials = (
            (console.user.encode("utf-8"), console.password.encode("utf-8")) if console.user else None
        )
        self._routes: dict[str, Callable[[Request, psycopg.Connection[Any], data.Health], Response]] = {
            "": self._timeline,
            "schema": self._schema,
            "drift": self._drift,
        }

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or ""
        if path != ROOT and not path.startswith(ROOT + "/"):
            if self.fallback is None:
                return _send(
                    start_response, Response(b"not found\n", "404 Not Found", "text/plain; charset=utf-8")
                )
            return self.fallback(environ, start_response)
        response = self._respond(environ)
        body = _send(start_response, response)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else body

    def _respond(self, environ: Environ) -> Response:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            response = Response(
                b"the console is read-only\n", "405 Method Not Allowed", "text/plain; charset=utf-8"
            )
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        if not self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            response = Response(b"authentication required\n", "401 Unauthorized", "text/plain; charset=utf-8")
            response.headers.append(
                ("WWW-Authenticate", 'Basic realm="electric-proxy console", charset="UTF-8"')
            )
            return response
        request = Request(environ, self._prefix(environ))
        static = _STATIC.get(request.path)
        if static is not None:
            return Response(*static)
        try:
            return self._page(request)
        except Unreachable as exc:
            health = data.Health(upstream=self.database.label, reachable=False, error=str(exc))
            page = pages.message_page(request.links, "Upstream unreachable", str(exc), health)
            return html(page, "503 Service Unavailable")
        except psycopg.Error as exc:  # the catalog could not be read: say why, passwords scrubbed
            logger.warning("console: cannot read the catalog: %s", _first_line(exc))
            page = pages.message_page(request.links, "Cannot read the catalog", _first_line(exc), None)
            return html(page, "500 Internal Server Error")

    def _page(self, request: Request) -> Response:
        with self.database.connection() as conn:
            health = data.health(
                conn, self.schema, self.database.label, self.config.drift.mode, APPLICATION_NAME
            )
            if not health.history:
                page = pages.message_page(
                    request.links,
                    "No migration history",
                    f"Database {health.upstream} has no migration history (catalog schema {self.schema}): "
                    "the proxy installs it when it starts.",
                    health,
                )
                return html(page, "503 Service Unavailable")
            route = self._routes.get(request.path)
            if route is not None:
                return route(request, conn, health)
            found = _MIGRATION_PATH.fullmatch(request.path)
            if found is not None:
                return self._migration(request, conn, health, int(found.group(1)))
            return html(
                pages.message_page(request.links, "Not found", "There is no such page.", health),
                "404 Not Found",
            )

    def _authorized(self, header: str) -> bool:
        if self._credentials is None:
            return True
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        expected_user, expected_password = self._credentials
        # Both compared, always: the time taken says nothing about which one was wrong.
        same_user = hmac.compare_digest(user, expected_user)
        same_password = hmac.compare_digest(password, expected_password)
        return same_user and same_password

    def _prefix(self, environ: Environ) -> str:
        if self.config.console.path_prefix:
            return self.config.console.path_prefix
        forwarded = str(environ.get("HTTP_X_FORWARDED_PREFIX", "")).strip().rstrip("/")
        # Only a plain path: the header comes from the client when no reverse proxy sets it.
        return forwarded if _PREFIX.fullmatch(forwarded) else ""

    # -- pages --------------------------------------------------------------------------------------

    def _timeline(self, request: Request, conn: psycopg.Connection[Any], health: data.Health) -> Response:
        query = data.TimelineQuery(
            framework=request.param("framework"),
            user=request.param("user"),
            since=_date(request.param("since")),
            until=_date(request.param("until")),
            page=_int(request.param("page"), 1),
            per_page=_int(request.param("per_page"), data.TimelineQuery().per_page),
        )
        return html(pages.timeline_page(request.links, data.timeline(conn, self.schema, query), health))

    def _migration(
        self, request: Request, conn: psycopg.Connection[Any], health: data.Health, migration_id: int
    ) -> Response:
        page = data.migration(conn, self.schema, migration_id)
        if page is None:
            message = pages.message_page(
                request.links, "Not found", f"No migration has id {migration_id}.", health
            )
            return html(message, "404 Not Found")
        return html(pages.migration_page(request.links, page, health))

    def _schema(self, request: Request, conn: psycopg.Connection[Any], health: data.Health) -> Response:
        before, after, at = request.param("from"), request.param("to"), request.param("at")
        electrified = data.electrified(conn, self.schema)
        try:
            if before is not None and after is not None:
                view = data.schema_diff(conn, self.schema, before, after)
                return html(pages.diff_page(request.links, view, health))
            latest = data.latest_migration(conn, self.schema)
            if at is None and latest is None:
                return html(pages.schema_page(request.links, None, electrified, health, latest=True))
            schema = data.schema_at(
                conn, self.schema, at if at is not None else data.migration_ref(latest or 0)
            )
        except store.UnknownMigration as exc:
            page = pages.schema_page(
                request.links, None, electrified, health, latest=False, error=exc.message
            )
            return html(page, "404 Not Found")
        is_latest = schema.migration_id == latest
        return html(pages.schema_page(request.links, schema, electrified, health, latest=is_latest))

    def _drift(self, request: Request, conn: psycopg.Connection[Any], health: data.Health) -> Response:
        return html(pages.drift_page(request.links, data.drift(conn, self.schema), health))


_STATIC: Final = {
    "style.css": (pages.STYLESHEET, "200 OK", "text/css; charset=utf-8"),
    "favicon.svg": (pages.ICON, "200 OK", "image/svg+xml"),
}


def _send(start_response: StartResponse, response: Response) -> list[bytes]:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        *_SECURITY_HEADERS,
        *response.headers,
    ]
    start_response(response.status, headers)
    return [response.body]


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _int(text: str | None, default: int) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 9:
        return default
    return int(text)
