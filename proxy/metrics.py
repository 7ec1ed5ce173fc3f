"""Every Prometheus metric, defined in one place, and the HTTP endpoint that serves them.

The relay never touches a prometheus-client object on its hot path: sessions bump plain ints on
one `Stats` object, and a collector turns them into samples when Prometheus scrapes. Labels come
from closed sets in code; no query text, table name or client address ever becomes a label.
"""

from __future__ import annotations

import platform
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from proxy import __version__

CLIENT_STATES = ("startup", "idle", "active", "idle_in_transaction", "failed_transaction")
REJECT_REASONS = ("max_connections", "draining", "startup_error", "protocol_error", "auth")
CONNECT_ERRORS = ("refused", "timeout", "tls", "auth", "other")
AUTH_MODES = ("password", "auth_query")
DRIFT_SEVERITIES = ("critical", "high", "medium", "low")
DRIFT_SOURCES = ("event_trigger", "scan")


@dataclass
class Stats:
    """Counters the sessions update with plain integer arithmetic."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    upstream_connect_errors: Counter[str] = field(default_factory=Counter)
    auth_failures: Counter[str] = field(default_factory=Counter)  # by auth mode: wrong passwords
    bytes_from_clients: int = 0
    bytes_to_clients: int = 0
    cancel_requests: int = 0
    upstream_connections: int = 0
    statements_inspected: Counter[str] = field(default_factory=Counter)
    guard_rejections: Counter[str] = field(default_factory=Counter)  # by SQLSTATE (EX codes, 42601)
    statements_captured: int = 0
    forced_closes: int = 0
    drift_open: Counter[str] = field(default_factory=Counter)  # open drifted objects, by severity
    drift_events: Counter[str] = field(default_factory=Counter)  # new drift events, by source
    draining: bool = False
    ready: bool = False
    client_states: Callable[[], Counter[str]] = field(default=Counter)


class StatsCollector(Collector):
    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        s = self._stats
        info = InfoMetricFamily("electric_proxy_build", "Build information.")
        info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield info
        yield _gauge("electric_proxy_ready", "1 when the proxy accepts connections.", int(s.ready))
        yield _gauge("electric_proxy_draining", "1 while connections drain after SIGTERM.", int(s.draining))
        states = s.client_states()
        clients = GaugeMetricFamily(
            "electric_proxy_client_connections", "Open client connections by state.", labels=["state"]
        )
        for state in CLIENT_STATES:
            clients.add_metric([state], states.get(state, 0))
        yield clients
        yield _gauge(
            "electric_proxy_server_connections", "Open upstream connections.", s.upstream_connections
        )
        yield _counter(
            "electric_proxy_client_connections_accepted", "Accepted client connections.", s.accepted
        )
        yield _labelled_counter(
            "electric_proxy_client_connections_rejected",
            "Refused client connections.",
            "reason",
            REJECT_REASONS,
            s.rejected,
        )
        yield _labelled_counter(
            "electric_proxy_server_connect_errors",
            "Failed upstream connections.",
            "reason",
            CONNECT_ERRORS,
            s.upstream_connect_errors,
        )
        yield _labelled_counter(
            "electric_proxy_auth_failures",
            "Failed logins to the proxy itself (password and auth_query modes), by mode.",
            "mode",
            AUTH_MODES,
            s.auth_failures,
        )
        yield _counter("electric_proxy_received_bytes", "Bytes received from clients.", s.bytes_from_clients)
        yield _counter("electric_proxy_sent_bytes", "Bytes sent to clients.", s.bytes_to_clients)
        yield _counter("electric_proxy_cancel_requests", "Cancel requests forwarded.", s.cancel_requests)
        yield _counter(
            "electric_proxy_shutdown_forced_connections",
            "Connections cut because the drain timed out.",
            s.forced_closes,
        )
        yield _labelled_counter(
            "electric_proxy_statements",
            "Query and Parse messages inspected.",
            "protocol",
            ("simple", "extended"),
            s.statements_inspected,
        )
        rejections = CounterMetricFamily(
            "electric_proxy_guard_rejections", "Statements the guard refused, by SQLSTATE.", labels=["code"]
        )
        for code, count in sorted(s.guard_rejections.items()):
            rejections.add_metric([code], count)
        yield rejections
        yield _counter(
            "electric_proxy_ddl_statements_captured",
            "DDL statements given a record in the migration history (before commit).",
            s.statements_captured,
        )
        drift = GaugeMetricFamily(
            "electric_proxy_drift_objects",
            "Objects whose schema differs from the recorded baseline (open drift), by severity.",
            labels=["severity"],
        )
        for severity in DRIFT_SEVERITIES:
            drift.add_metric([severity], s.drift_open.get(severity, 0))
        yield drift
        yield _labelled_counter(
            "electric_proxy_drift_events",
            "Drifted objects found, by what found them (the database's DDL log or the periodic scan).",
            "source",
            DRIFT_SOURCES,
            s.drift_events,
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labelled_counter(
    name: str, doc: str, label: str, values: Iterable[str], counts: Counter[str]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value in values:
        family.add_metric([value], counts.get(value, 0))
    return family


def build_registry(stats: Stats) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(stats))
    return registry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def health_app(registry: CollectorRegistry, stats: Stats) -> Callable[..., Iterable[bytes]]:
    """`/metrics` from prometheus-client; `/healthz` (alive) and `/readyz` (accepting)."""
    metrics = make_wsgi_app(registry, disable_compression=False)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            return _plain(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            if stats.ready and not stats.draining:
                return _plain(start_response, "200 OK", b"ready\n")
            return _plain(start_response, "503 Service Unavailable", b"not ready\n")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        return _plain(start_response, "404 Not Found", b"not found\n")

    return app


def _plain(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body]


def start_http_server(host: str, port: int, stats: Stats) -> WSGIServer:
    """Serve metrics and health in a daemon thread; the event loop never blocks on a scrape."""
    server = make_server(host, port, health_app(build_registry(stats), stats), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
