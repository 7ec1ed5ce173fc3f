"""Pytest plugin: a test that reads configuration sees only what it sets itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The Electric proxy's environment names, kept by ours (proxy/config.py).
CONFIG_ENV_NAMES = ("DATABASE_URL", "PG_PROXY_PORT", "PG_PROXY_PASSWORD", "LOG_LEVEL")


@pytest.fixture
def no_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty working directory (no ./config.toml) and no configuration variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ELECTRIC_PROXY_") or name.removesuffix("_FILE") in CONFIG_ENV_NAMES:
            monkeypatch.delenv(name)
