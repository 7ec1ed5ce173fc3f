"""The image, the examples and the monitoring assets, checked without a Docker engine or a cluster:
hadolint on the Dockerfile, the YAML parsed and held to what the docs promise, promtool on the
rules (syntax and unit tests) and on a real exposition, and every metric the dashboard and the
alerts name defined by proxy/metrics.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from proxy.config import Config
from proxy.metrics import Stats, StatsCollector, build_registry

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DEFINED_ELSEWHERE: set[str] = set()  # families another piece of work will define


def tool(name: str) -> str:
    """A checker the CI installs (.ci/run): its absence is a failure, not a skip."""
    found = shutil.which(name) or shutil.which(str(Path(__file__).parents[2] / ".venv" / "bin" / name))
    assert found, f"{name} is not installed: run .ci/run (or pip install -e '.[test]' / apt-get install)"
    return found


def run(*cmd: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def load_yaml(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def test_dockerfile_passes_hadolint_and_keeps_its_promises() -> None:
    done = run(tool("hadolint"), "--failure-threshold", "info", "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2  # multi-stage
    assert re.search(r"^USER \d+:\d+$", text, re.MULTILINE)  # numeric, non-root
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "electric-proxy"]' in text  # an init, exec form
    assert (
        'HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["electric-proxy", "health"]'
        in text
    )
    for label in ("source", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    assert "-c requirements.lock ." in text  # the locked set (.ci/run tests and audits the same)
    assert "127.0.0.1:9432" not in text  # the health check reads the configured address


def test_compose_file_runs_postgres_proxy_and_prometheus() -> None:
    (compose,) = load_yaml(ROOT / "docker-compose.yml")
    services = compose["services"]
    assert {"postgres", "proxy", "prometheus"} <= set(services)
    proxy = services["proxy"]
    assert proxy["healthcheck"]["test"] == ["CMD", "electric-proxy", "health", "--ready"]
    assert proxy["depends_on"]["postgres"]["condition"] == "service_healthy"
    drain = Config().shutdown.drain_timeout_ms / 1000
    assert int(proxy["stop_grace_period"].rstrip("s")) >= drain + 5
    for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (ROOT / volume.split(":")[0]).exists(), volume
    (prometheus,) = load_yaml(MONITORING / "prometheus.yml")
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["proxy:9432"]


def test_kubernetes_example_is_a_native_sidecar_with_probes() -> None:
    documents = load_yaml(ROOT / "deploy" / "kubernetes" / "sidecar.yaml")
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    security = sidecar["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"]
    assert "/tmp" in {mount["mountPath"] for mount in sidecar["volumeMounts"]}  # workers > 1 write there
    (configmap,) = [d for d in documents if d["kind"] == "ConfigMap"]
    import tomllib

    drain_ms = tomllib.loads(configmap["data"]["config.toml"])["shutdown"]["drain_timeout_ms"]
    assert pod["terminationGracePeriodSeconds"] >= drain_ms / 1000 + 5


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = tool("promtool")
    checked = run(promtool, "check", "rules", "alerts.yml", cwd=MONITORING)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "alerts_test.yml", cwd=MONITORING)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    (rules,) = load_yaml(MONITORING / "alerts.yml")
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    wanted = {
        "ElectricProxyUpstreamDown",
        "ElectricProxyDriftOpen",
        "ElectricProxyGuardRejections",
        "ElectricProxyAuthFailureSpike",
        "ElectricProxyConnectionsSaturated",
    }
    assert wanted <= names


def test_exposition_passes_promtool_check_metrics() -> None:
    stats = Stats(accepted=3)
    stats.guard_rejections["EX010"] += 1
    stats.limits = {"max_client_connections": 100}
    exposition = generate_latest(build_registry(stats)).decode()
    done = run(tool("promtool"), "check", "metrics", stdin=exposition)
    assert done.returncode == 0, done.stdout + done.stderr  # naming lint: _total, units, HELP


def defined_families() -> set[str]:
    stats = Stats()
    stats.limits = {
        "max_client_connections": 0,
        "workers": 1,
        "max_message_bytes": 0,
        "drain_timeout_seconds": 0,
    }
    names = set()
    for family in StatsCollector(stats).collect():
        names.add(family.name + ("_info" if family.type == "info" else ""))
    return names | DEFINED_ELSEWHERE


def used_families(text: str) -> set[str]:
    used = set(re.findall(r"\belectric_proxy_[a-z_]+", text))
    return {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}


@pytest.mark.parametrize("asset", ["alerts.yml", "grafana/electric-proxy.json"])
def test_dashboard_and_alerts_name_only_defined_metrics(asset: str) -> None:
    text = (MONITORING / asset).read_text()
    if asset.endswith(".json"):
        dashboard = json.loads(text)
        assert dashboard["uid"] == "electric-proxy" and dashboard["panels"]
        text = json.dumps([t["expr"] for p in dashboard["panels"] for t in p["targets"]])
    unknown = used_families(text) - defined_families()
    assert not unknown, f"{asset} names metrics that proxy/metrics.py does not define: {sorted(unknown)}"


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
)
def test_guides_link_to_files_that_exist(page: str) -> None:
    path = ROOT / page
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (path.parent / target).exists(), f"{page} links to missing {target}"
