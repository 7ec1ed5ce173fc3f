"""The metrics module without sockets: what N workers publish adds up to what one would serve,
and docs/metrics.md is what scripts/metrics_reference.py makes of the module today."""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.values import MultiProcessValue

from proxy.metrics import Buckets, MultiprocessMirror, Stats, build_registry, multiprocess_registry

ROOT = Path(__file__).resolve().parents[2]


def worker_stats(accepted: int, connect_times: list[float], idle: int) -> Stats:
    stats = Stats(accepted=accepted, ready=True, upstream_up=True)
    for seconds in connect_times:
        stats.upstream_connect_seconds.observe(seconds)
    stats.rejected["auth"] += 1
    stats.guard_rejections["EX010"] += accepted
    stats.limits = {"max_client_connections": 10, "workers": 2}
    stats.client_states = lambda: Counter(idle=idle)
    return stats


def test_workers_add_up_in_the_multiprocess_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # put back after the test
    first = MultiprocessMirror(worker_stats(3, [0.002, 0.02], idle=1), str(tmp_path))
    first.publish()
    # A second worker writes files of its own, named by its pid: stand in with another pid.
    second = MultiprocessMirror(worker_stats(5, [0.2], idle=2), str(tmp_path))
    second._value_class = MultiProcessValue(lambda: 424242)
    second.publish()
    first.publish()  # publishing again sets, never adds

    registry = multiprocess_registry(str(tmp_path))
    get = registry.get_sample_value
    assert get("electric_proxy_client_connections_accepted_total") == 8
    assert get("electric_proxy_guard_rejections_total", {"code": "EX010"}) == 8
    assert get("electric_proxy_client_connections_rejected_total", {"reason": "auth"}) == 2
    assert get("electric_proxy_client_connections", {"state": "idle"}) == 3
    assert get("electric_proxy_config_max_client_connections") == 20  # per worker, summed
    assert get("electric_proxy_config_workers") == 2  # the same in each: max
    assert get("electric_proxy_upstream_up") == 1
    assert get("electric_proxy_upstream_connect_duration_seconds_count") == 3
    assert get("electric_proxy_upstream_connect_duration_seconds_bucket", {"le": "0.0025"}) == 1
    assert get("electric_proxy_upstream_connect_duration_seconds_bucket", {"le": "0.025"}) == 2
    assert get("electric_proxy_upstream_connect_duration_seconds_bucket", {"le": "+Inf"}) == 3
    assert math.isclose(get("electric_proxy_upstream_connect_duration_seconds_sum") or 0, 0.222)
    text = generate_latest(registry).decode()
    assert "_created" not in text


def test_single_process_registry_has_no_created_series_and_keeps_process_metrics() -> None:
    text = generate_latest(build_registry(worker_stats(1, [0.01], idle=0))).decode()
    assert "_created" not in text
    assert "process_open_fds" in text
    assert re.search(r'electric_proxy_build_info\{pglast_version="[\d.]+",python_version="', text)


def test_buckets_are_cumulative_with_inf() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]


def test_metrics_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "metrics_reference", ROOT / "scripts" / "metrics_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert current == module.render(), "docs/metrics.md is stale: run scripts/metrics_reference.py"


def test_readiness_of_every_worker_is_read_from_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy.health import Health, workers_ready_reader

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    serving = worker_stats(1, [], idle=0)
    other = worker_stats(1, [], idle=0)
    other.readiness = lambda: "upstream unreachable"  # its own verdict
    other_mirror = MultiprocessMirror(other, str(tmp_path))
    other_mirror._value_class = MultiProcessValue(lambda: 424243)
    other_mirror.publish()
    health = Health(serving, stall_timeout=10, workers_ready=workers_ready_reader(str(tmp_path)))
    assert health.own_not_ready() is None
    assert health.not_ready() == "a worker is not ready"
    other.readiness = lambda: None
    other_mirror.publish()
    assert health.not_ready() is None


@pytest.mark.parametrize(
    ("host", "ready", "url"),
    [
        ("0.0.0.0", False, "http://127.0.0.1:9432/healthz"),
        ("::", True, "http://[::1]:9432/readyz"),
        ("10.1.2.3", True, "http://10.1.2.3:9432/readyz"),
    ],
)
def test_health_cli_asks_the_configured_address(host: str, ready: bool, url: str) -> None:
    from proxy.cli_health import probe_url

    assert probe_url(host, 9432, ready) == url


def test_health_cli_with_metrics_disabled_checks_the_listener(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from proxy import cli

    monkeypatch.setenv("ELECTRIC_PROXY_METRICS_ENABLED", "false")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert cli.main(["health", "--listen", f"127.0.0.1:{port}"]) == 0
        assert "accepts connections" in capsys.readouterr().out
    assert cli.main(["health", "--listen", f"127.0.0.1:{port}"]) == 1
    assert "refuses connections" in capsys.readouterr().err
