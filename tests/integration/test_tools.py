"""Postgres's own tools through the proxy: pgbench, psql, logical and physical replication."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.pgfixtures import ALICE_PASSWORD, REPLICATOR_PASSWORD
from tests.proxyfixtures import RunningProxy


def run(pg: EmbeddedPostgres, tool: str, *args: str, password: str, timeout: float = 120) -> str:
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "prefer"}
    done = subprocess.run(
        [str(pg.bin(tool)), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{tool} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def pgbench_db(proxy: RunningProxy, pg: EmbeddedPostgres) -> str:
    pg.execute("DROP DATABASE IF EXISTS bench")
    pg.execute("CREATE DATABASE bench OWNER alice")
    target = ["-h", proxy.host, "-p", str(proxy.port), "-U", "alice"]
    run(pg, "pgbench", "-i", "-s", "1", "-q", *target, "bench", password=ALICE_PASSWORD)
    return "bench"


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only(proxy: RunningProxy, pg: EmbeddedPostgres, pgbench_db: str, mode: str) -> None:
    out = run(
        pg,
        "pgbench",
        "-n",
        "-S",
        "-M",
        mode,
        "-c",
        "4",
        "-j",
        "2",
        "-t",
        "300",
        "-h",
        proxy.host,
        "-p",
        str(proxy.port),
        "-U",
        "alice",
        pgbench_db,
        password=ALICE_PASSWORD,
    )
    assert "number of transactions actually processed: 1200/1200" in out
    assert "number of failed transactions: 0" in out


def test_pgbench_tpcb_writes(proxy: RunningProxy, pg: EmbeddedPostgres, pgbench_db: str) -> None:
    out = run(
        pg,
        "pgbench",
        "-n",
        "-M",
        "extended",
        "-c",
        "2",
        "-t",
        "100",
        "-h",
        proxy.host,
        "-p",
        str(proxy.port),
        "-U",
        "alice",
        pgbench_db,
        password=ALICE_PASSWORD,
    )
    assert "number of transactions actually processed: 200/200" in out


def test_psql_script_with_copy_and_errors(proxy: RunningProxy, pg: EmbeddedPostgres, tmp_path: Path) -> None:
    script = tmp_path / "s.sql"
    script.write_text(
        "CREATE TEMP TABLE p (x int);\n"
        "COPY p FROM STDIN;\n1\n2\n3\n\\.\n"
        "SELECT sum(x) AS total FROM p;\n"
        "\\set ON_ERROR_STOP 0\n"
        "SELECT 1/0;\n"
        "SELECT 'still here';\n"
    )
    url = proxy.url(sslmode="prefer")
    env = {**os.environ}
    done = subprocess.run(
        [str(pg.bin("psql")), url, "-X", "-f", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert " 6\n" in done.stdout
    assert "division by zero" in done.stderr
    assert "still here" in done.stdout


def test_pg_recvlogical_through_the_proxy(proxy: RunningProxy, pg: EmbeddedPostgres, tmp_path: Path) -> None:
    with pg.connect("app") as admin:
        admin.execute("DROP TABLE IF EXISTS logical_t; CREATE TABLE logical_t (id int primary key, v text)")
    conninfo = f"host={proxy.host} port={proxy.port} user=replicator dbname=app"
    slot = ["-d", conninfo, "--slot", "proxy_slot"]
    run(pg, "pg_recvlogical", *slot, "--create-slot", "-P", "test_decoding", password=REPLICATOR_PASSWORD)
    out_file = tmp_path / "changes.txt"
    env = {**os.environ, "PGPASSWORD": REPLICATOR_PASSWORD}
    stream = subprocess.Popen(
        [str(pg.bin("pg_recvlogical")), *slot, "--start", "-f", str(out_file), "-F", "0", "--no-loop"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with pg.connect("app") as admin:
            admin.execute("INSERT INTO logical_t VALUES (1, 'through the proxy')")
        expected = "table public.logical_t: INSERT: id[integer]:1 v[text]:'through the proxy'"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stream.poll() is None:
            if out_file.exists() and expected in out_file.read_text():
                break
            time.sleep(0.05)
        assert stream.poll() is None, stream.stderr.read() if stream.stderr else ""
        assert expected in out_file.read_text()
        stream.terminate()
        stream.wait(10)
    finally:
        pg.execute("SELECT pg_drop_replication_slot('proxy_slot')")


def test_pg_basebackup_through_the_proxy(proxy: RunningProxy, pg: EmbeddedPostgres, tmp_path: Path) -> None:
    target = tmp_path / "backup"
    run(
        pg,
        "pg_basebackup",
        "-h",
        proxy.host,
        "-p",
        str(proxy.port),
        "-U",
        "replicator",
        "-D",
        str(target),
        "-Ft",
        "-X",
        "none",
        "-c",
        "fast",
        "--no-sync",
        "--no-manifest",
        password=REPLICATOR_PASSWORD,
    )
    assert (target / "base.tar").stat().st_size > 1_000_000


def test_many_concurrent_sessions(proxy: RunningProxy) -> None:
    conns = [psycopg.connect(proxy.dsn(), autocommit=True) for _ in range(30)]
    try:
        pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns}  # type: ignore[index]
        assert len(pids) == 30  # one upstream backend per client
    finally:
        for c in conns:
            c.close()
