"""Every Prometheus metric, defined in one place, and the HTTP endpoint that serves them.

The relay never touches a prometheus-client object on its hot path: sessions bump plain ints on
one `Stats` object, and a collector turns them into samples when Prometheus scrapes. Labels come
from closed sets in code; no query text, table name or client address ever becomes a label.

With `workers = N` each worker copies its samples, about once a second and at every scrape it
serves, into prometheus-client's multiprocess files (`MultiprocessMirror`); the first worker
serves the sum of all of them. Gauges say how workers combine (`MULTIPROCESS_MODES`).
`docs/metrics.md` is generated from this module (`scripts/metrics_reference.py`).
"""

from __future__ import annotations

import bisect
import json
import math
import os
import platform
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, disable_created_metrics, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
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
    # -- operations (issue 10): health, limits, upstream, messages --------------------------------
    upstream_up: bool = False
    readiness: Callable[[], str | None] = field(default=lambda: None)  # why not ready, or None
    upstream_connect_seconds: Buckets = field(default_factory=lambda: Buckets(CONNECT_BUCKETS))
    catalog_counts: Callable[[], tuple[int, int]] = field(default=lambda: (0, 0))  # migrations, electrified
    limits: dict[str, float] = field(default_factory=dict)  # electric_proxy_config_<name>
    loop_heartbeat: float = 0.0  # wall-clock time of the event loop's last heartbeat
    reloads: Counter[str] = field(default_factory=Counter)  # SIGHUP reloads by outcome
    last_reload_ok: bool = True


class StatsCollector(Collector):
    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        s = self._stats
        info = InfoMetricFamily("electric_proxy_build", "Build information.")
        info.add_metric([], {"version": __version__, "python_version": platform.python_version(), **_BUILD})
        yield info
        yield from _operations(s)
        yield _gauge(
            "electric_proxy_ready",
            "1 when /readyz answers 200: started, upstream reachable, catalogs installed, not draining.",
            int(s.ready and s.readiness() is None),
        )
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


# -- operations (issue 10) ---------------------------------------------------------------------

# Upstream connect plus TLS: 1 ms on a local socket to the connect timeout.
CONNECT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def _build_labels() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"pglast_version": version("pglast")}
    except PackageNotFoundError:
        return {}


_BUILD = _build_labels()  # read once: the installed parser's version

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the series count and help no query


class Buckets:
    """A histogram kept as plain numbers: `observe` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        total = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += count
            out.append((_le(bound), total))
        return out


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


def _operations(s: Stats) -> Iterator[Metric]:
    """The families an operator's dashboard and alerts are built on (see docs/metrics.md)."""
    yield _gauge(
        "electric_proxy_upstream_up",
        "1 when the last upstream check (a query on the proxy's own connection) succeeded.",
        int(s.upstream_up),
    )
    connect = HistogramMetricFamily(
        "electric_proxy_upstream_connect_duration_seconds",
        "Time to open a client's upstream connection, TLS included.",
    )
    connect.add_metric([], s.upstream_connect_seconds.cumulative(), s.upstream_connect_seconds.sum)
    yield connect
    migrations, electrified = s.catalog_counts()
    yield _gauge(
        "electric_proxy_migrations_recorded",
        "Migrations in the history of the upstream URL's database.",
        migrations,
    )
    yield _gauge(
        "electric_proxy_electrified_tables", "Electrified tables in the managed databases.", electrified
    )
    for name, value in sorted(s.limits.items()):
        yield _gauge(f"electric_proxy_config_{name}", _LIMIT_HELP[name], value)
    yield _gauge(
        "electric_proxy_event_loop_heartbeat_timestamp_seconds",
        "Unix time of the event loop's last heartbeat; the oldest worker's with workers > 1.",
        s.loop_heartbeat,
    )
    yield _labelled_counter(
        "electric_proxy_config_reloads",
        "Configuration reloads (SIGHUP), by outcome.",
        "outcome",
        ("success", "failure"),
        s.reloads,
    )
    yield _gauge(
        "electric_proxy_config_last_reload_successful",
        "1 when the last configuration reload succeeded (or none was asked for).",
        int(s.last_reload_ok),
    )


_LIMIT_HELP: dict[str, str] = {
    "max_client_connections": "Configured client connection limit, summed over workers (+Inf: none).",
    "workers": "Configured worker processes.",
    "max_message_bytes": "Largest protocol message accepted.",
    "drain_timeout_seconds": "Time open sessions get to finish after SIGTERM.",
}

# How workers' values of a gauge combine (prometheus-client's multiprocess_mode); counters and
# histograms add up. Unlisted gauges add up too ("livesum"): connection counts, limits per worker.
MULTIPROCESS_MODES: dict[str, str] = {
    "electric_proxy_build_info": "livemax",
    "electric_proxy_ready": "livemin",
    "electric_proxy_draining": "livemax",
    "electric_proxy_upstream_up": "livemin",
    "electric_proxy_migrations_recorded": "livemax",
    "electric_proxy_electrified_tables": "livemax",
    "electric_proxy_config_workers": "livemax",
    "electric_proxy_config_max_message_bytes": "livemax",
    "electric_proxy_config_drain_timeout_seconds": "livemax",
    "electric_proxy_event_loop_heartbeat_timestamp_seconds": "livemin",
    "electric_proxy_config_last_reload_successful": "livemin",
    "electric_proxy_drift_objects": "livemax",  # every worker reads the same catalog
}
_MIRROR_TYPES = {"counter": "counter", "gauge": "gauge", "info": "gauge", "histogram": "histogram"}


def build_registry(stats: Stats) -> CollectorRegistry:
    """The registry of one process: its own samples, and the process_* families."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(stats))
    ProcessCollector(registry=registry)  # process_open_fds / process_max_fds: a saturation signal
    return registry


class MultiprocessMirror:
    """Copies one worker's samples into prometheus-client's multiprocess files.

    Values are set, never incremented: each worker writes its own totals to files named by its
    pid, and `MultiProcessCollector` adds the workers up (or takes the min/max of a gauge, per
    `MULTIPROCESS_MODES`). Only the values change between two publishes, so this costs a few
    dictionary look-ups per sample, about once a second.
    """

    def __init__(self, stats: Stats, directory: str) -> None:
        from prometheus_client.values import MultiProcessValue

        # prometheus-client finds the directory in the environment when it opens a file.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        self._collector = StatsCollector(stats)
        self._directory = directory
        self._value_class = MultiProcessValue()  # type: ignore[no-untyped-call]
        self._values: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()  # the loop's timer and a scrape may publish at once

    def publish(self) -> None:
        with self._lock:
            for family in self._collector.collect():
                typ = _MIRROR_TYPES[family.type]
                for name, labels, value in _mirror_samples(family):
                    self._value(typ, family, name, labels).set(value)

    def _value(self, typ: str, family: Metric, name: str, labels: dict[str, str]) -> Any:
        metric_name = name if family.type == "info" else family.name
        key = (metric_name, name, json.dumps(labels, sort_keys=True))
        found = self._values.get(key)
        if found is None:
            mode = MULTIPROCESS_MODES.get(metric_name, "livesum") if typ == "gauge" else ""
            found = self._value_class(
                typ,
                metric_name,
                name,
                tuple(labels),
                tuple(labels.values()),
                family.documentation,
                multiprocess_mode=mode,
            )
            self._values[key] = found
        return found


def _mirror_samples(family: Metric) -> Iterator[tuple[str, dict[str, str], float]]:
    """A family's samples as the multiprocess files hold them: histogram buckets not cumulative,
    no `_count` (the collector derives it from the buckets)."""
    if family.type != "histogram":
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value
        return
    previous = 0.0
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            yield sample.name, sample.labels, sample.value - previous
            previous = sample.value
        elif sample.name.endswith("_sum"):
            yield sample.name, sample.labels, sample.value


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """The registry the serving worker answers `/metrics` from: every worker's samples combined."""
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def metrics_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    return make_wsgi_app(registry, disable_compression=False)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_http_server(host: str, port: int, app: Callable[..., Iterable[bytes]] | Stats) -> WSGIServer:
    """Serve `app` in a daemon thread; the event loop never blocks on a scrape.

    Given a `Stats`, serve that process's metrics with `/healthz` and `/readyz` judged from it
    alone (no event-loop heartbeat runs then: liveness is not checked).
    """
    if isinstance(app, Stats):
        from proxy.health import Health, health_app

        app = health_app(Health(app, stall_timeout=math.inf), metrics_app(build_registry(app)))
    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
