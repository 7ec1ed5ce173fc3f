"""Pytest plugin: one real PostgreSQL server per test session, with the roles the suite expects.

Loaded from tests/conftest.py via `pytest_plugins = ["tests.pgfixtures"]`.

Roles on the `pg` server (all LOGIN):
- `alice` / "alice-secret": SCRAM, CREATEDB, owns database `app`.
- `md5user` / "md5-secret": password stored as md5 and an hba rule forcing md5 auth, so the
  proxy's md5 path is exercised end to end.
- `replicator` / "repl-secret": REPLICATION, for logical/physical replication connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.embedded import EmbeddedPostgres
from proxy.tlsutil import generate_self_signed_cert

ALICE_PASSWORD = "alice-secret"
MD5_PASSWORD = "md5-secret"
REPLICATOR_PASSWORD = "repl-secret"

# Ahead of the default scram rules (first match wins), so only md5user authenticates with md5.
MD5_HBA = (
    "host all md5user 127.0.0.1/32 md5",
    "host all md5user ::1/128 md5",
)


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(hba_extra=MD5_HBA) as server:
        server.create_role("alice", ALICE_PASSWORD, createdb=True)
        server.create_role("md5user", MD5_PASSWORD, encryption="md5")
        server.create_role("replicator", REPLICATOR_PASSWORD, replication=True)
        server.execute("CREATE DATABASE app OWNER alice")
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key): a self-signed EC certificate for localhost / 127.0.0.1, valid one day."""
    return generate_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def pg_url(pg: EmbeddedPostgres) -> str:
    """alice's URL for the `app` database: the usual upstream for proxy tests."""
    return pg.url("app", user="alice", password=ALICE_PASSWORD)
