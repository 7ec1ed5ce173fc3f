from __future__ import annotations

pytest_plugins = ["tests.pgfixtures", "tests.proxyfixtures", "tests.configenv"]
