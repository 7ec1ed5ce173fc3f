"""Which framer the relay runs, and when the compiled scanner is not trusted."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig

import pytest

from proxy.net import session
from proxy.protocol import framer


def test_relay_uses_the_compiled_scanner_where_a_compiler_exists() -> None:
    # The session builds its framers from this class: with a C compiler on the machine the
    # install must have built the scanner, and it must be the one in use (not a silent fallback).
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the relay runs the pure-Python framer")
    assert session.Framer is framer.Framer
    assert framer.IMPLEMENTATION == "c"
    assert session.Framer.scan is not None
    assert framer.PyFramer.scan is None


def test_stale_build_falls_back_with_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _scan = pytest.importorskip("proxy.protocol._scan")
    monkeypatch.setattr(_scan, "SOURCE_SHA256", "0" * 64)
    scan, _level, why = framer._load_scan()
    assert scan is None
    assert "older than _scan.c" in why


def test_env_forces_pure_python() -> None:
    code = "from proxy.protocol import framer; print(framer.IMPLEMENTATION, framer.Framer.scan)"
    env = {"ELECTRIC_PROXY_FRAMER": "python", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["python", "None"]
