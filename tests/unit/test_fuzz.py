"""The fuzz targets in the suite: every seed and every past crash replayed, then a short
coverage-guided run of each target (`python -m fuzz.run --seconds N` runs them longer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS
from proxy.ddl.prefilter import may_need_parse

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
SHORT_RUN_SECONDS = 3


def _inputs(kind: str) -> list[Path]:
    paths: list[Path] = []
    for name in TARGETS:
        folder = FUZZ / kind / name
        paths += sorted(folder.iterdir()) if folder.is_dir() else []
    return paths


@pytest.mark.parametrize("path", _inputs("regressions"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_past_crashes_stay_fixed(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_recorded_sessions_pass_the_targets(name: str) -> None:
    seeds = sorted((FUZZ / "corpus" / name).iterdir())
    assert len(seeds) >= 10, "seed corpus missing: run `python -m fuzz.record`"
    for path in seeds:
        TARGETS[name](path.read_bytes())


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT 1/insert INTO cr",  # the fuzzer's find: a column named "insert"
        b"SELECT (1) insert INTO t",
        b"SELECT 1 AS insert INTO t",
        b"WITH x AS (SELECT 1) SELECT (2) insert INTO t FROM x",
    ],
)
def test_select_into_after_a_column_named_insert_is_parsed(sql: bytes) -> None:
    # Each creates table t on Postgres 15; the prefilter took the INTO for INSERT's.
    assert may_need_parse(sql)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_coverage_guided_run(name: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    cmd = [sys.executable, "-m", "fuzz.run", "--seconds", str(SHORT_RUN_SECONDS), "--target", name]
    cmd += ["--no-keep", "--work", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert f"{name}: " in proc.stdout and "0 crash(es)" in proc.stdout, proc.stdout
