"""`serve` without an upstream: the embedded Postgres, and the exact `history` command it prints."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.test_process import ServeProcess, clean_env, wait_for_port


def test_serve_prints_the_history_command_that_reads_its_migrations(tmp_path: Path) -> None:
    proc = ServeProcess(cwd=tmp_path)
    try:
        assert proc.proc.stderr is not None
        url = command = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and command is None:
            line = proc.proc.stderr.readline()
            assert line, "serve exited before printing its commands"
            if url is None and (found := re.search(r"psql '(postgresql://\S+)'", line)):
                url = found.group(1)
            if found := re.search(r"^\s*(electric-proxy history .*)$", line):
                command = found.group(1)
        assert url is not None and command is not None
        wait_for_port(proc.port, proc.proc)
        psql = subprocess.run(
            ["psql", url, "-XAtc", "CREATE TABLE embedded_items (id int PRIMARY KEY)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert psql.returncode == 0, psql.stderr

        argv = shlex.split(command)  # exactly as printed, the program name aside
        assert argv[:2] == ["electric-proxy", "history"]
        done = subprocess.run(
            [sys.executable, "-m", "proxy", *argv[1:], "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
        statements = [s["sql"] for m in json.loads(done.stdout) for s in m["statements"]]
        assert statements == ["CREATE TABLE embedded_items (id int PRIMARY KEY)"]
        proc.proc.send_signal(signal.SIGINT)
        assert proc.proc.wait(20) == 0
    finally:
        proc.stop()
