"""Record real client sessions as fuzz seeds: `python -m fuzz.record` (rewrites fuzz/corpus/).

A Postgres of our own, a recording TCP relay in front of it, and real clients through the relay:
psql, psycopg (simple and extended protocol, COPY), asyncpg (binary parameters), pgbench, and an
Alembic-style migration (DDL plus version-table writes, over both protocols). Each connection's
two byte streams become seeds:

- `protocol/`: one byte saying the direction (0 client, 1 server), then the stream;
- `ddl/`: the SQL of every Query and Parse;
- `versions/`: the client stream from its first typed message (Query, Parse, Bind, ...).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import asyncpg
import psycopg

from proxy.embedded import EmbeddedPostgres
from proxy.errors import ProtocolError
from proxy.net.server import free_port
from proxy.protocol.framer import Frame, Framer

CORPUS = Path(__file__).resolve().parent / "corpus"
PASSWORD = "fuzz-secret"
MAX_SEED = 16 * 1024  # libFuzzer inputs stay small; long sessions are cut


class RecordingRelay:
    """Relays TCP to `target` and keeps, per connection, what each side sent."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.sessions: list[tuple[bytearray, bytearray]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client, server = bytearray(), bytearray()
        self.sessions.append((client, server))
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(_copy(reader, up_writer, client), _copy(up_reader, writer, server))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, into: bytearray) -> None:
    try:
        while data := await reader.read(65536):
            into += data
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


# -- the sessions -----------------------------------------------------------------------------------

MIGRATION = [
    "CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)",
    "CREATE TABLE account (id serial PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now())",
    "ALTER TABLE account ADD COLUMN email text",
    "CREATE INDEX account_email ON account (email)",
    "COMMENT ON TABLE account IS 'people; with a \"quote\"'",
    "INSERT INTO alembic_version (version_num) VALUES ('1a2b3c4d5e6f')",
    "UPDATE alembic_version SET version_num='2b3c4d5e6f70' "
    "WHERE alembic_version.version_num = '1a2b3c4d5e6f'",
]


def psql_session(pg: EmbeddedPostgres, port: int) -> None:
    script = (
        "CREATE TEMP TABLE t (id int, v text);\n"
        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20) g;\n"
        "\\copy t TO STDOUT\n"
        "SELECT * FROM t WHERE id < 3;\n"
        "BEGIN; SAVEPOINT a; SELECT 1/0; ROLLBACK TO a; COMMIT;\n"
        "DO $$ BEGIN RAISE NOTICE 'hello'; END $$;\n"
        "LISTEN chan; NOTIFY chan, 'payload';\n"
    )
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    cmd = [str(pg.bin("psql")), "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "fuzz", "fuzz"]
    subprocess.run(cmd, input=script, text=True, env=env, check=False, capture_output=True, timeout=60)


def psycopg_session(port: int) -> None:
    dsn = f"host=127.0.0.1 port={port} user=fuzz password={PASSWORD} dbname=fuzz sslmode=disable"
    with psycopg.connect(dsn) as conn:
        for sql in MIGRATION:
            conn.execute(sql)  # extended protocol (no parameters still goes through Parse)
        conn.execute("INSERT INTO account (name, email) VALUES (%s, %s)", ("ann", "a@example.com"))
        conn.execute("SELECT * FROM account WHERE id = %s", (1,), prepare=True)
        conn.execute("SELECT * FROM account WHERE id = %s", (1,), prepare=True)
        with conn.cursor() as cur, cur.copy("COPY account (name) FROM STDIN") as copy:
            copy.write_row(("bob",))
        conn.commit()
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT * FROM missing_table")
            except psycopg.Error:
                conn.rollback()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.cursor().execute(
            "DROP TABLE IF EXISTS django_migrations; "
            "CREATE TABLE django_migrations "
            "(id serial, app varchar(255), name varchar(255), applied timestamptz); "
            "INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0001_initial', now())"
        )
        conn.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
            ("shop", "0002_more", "2024-01-01T00:00:00Z"),
        )
        conn.execute("SELECT set_config('search_path', 'public', false)")


async def asyncpg_session(port: int) -> None:
    conn = await asyncpg.connect(f"postgresql://fuzz:{PASSWORD}@127.0.0.1:{port}/fuzz", ssl=False)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp)"
        )
        async with conn.transaction():
            await conn.execute("CREATE TABLE IF NOT EXISTS item (id bigserial PRIMARY KEY, data jsonb)")
            await conn.execute(
                "INSERT INTO schema_migrations (version, inserted_at) VALUES ($1, $2)",
                20240101120000,
                None,
            )
        await conn.fetch(
            "SELECT $1::int + $2::bigint, $3::text, $4::uuid",
            1,
            2,
            "x",
            "00000000-0000-0000-0000-000000000001",
        )
        await conn.executemany("INSERT INTO item (data) VALUES ($1)", [('{"a":1}',), ("[1,2]",)])
        await conn.execute("ALTER TABLE item ADD COLUMN IF NOT EXISTS note text")
    finally:
        await conn.close()


def pgbench_session(pg: EmbeddedPostgres, port: int) -> None:
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    base = [str(pg.bin("pgbench")), "-h", "127.0.0.1", "-p", str(port), "-U", "fuzz"]
    subprocess.run(
        [*base, "-i", "-s", "1", "-q", "fuzz"],
        env=env,
        check=False,
        capture_output=True,
        timeout=120,
    )
    for mode in ("simple", "extended", "prepared"):
        subprocess.run(
            [*base, "-M", mode, "-t", "3", "fuzz"],
            env=env,
            check=False,
            capture_output=True,
            timeout=60,
        )


# -- seeds --------------------------------------------------------------------------------------------


def _client_frames(stream: bytes) -> list[Frame]:
    """The client's messages: startup packets (SSL/GSS requests repeat them), then typed ones."""
    frames: list[Frame] = []
    framer = Framer(keep_all=True, startup=True)
    pos = 0
    try:
        while pos < len(stream):
            items = framer.feed(stream[pos : pos + 1])
            pos += 1
            for item in items:
                if isinstance(item, Frame):
                    frames.append(item)
                    if item.type == -1 and len(item.raw) == 8:  # SSLRequest/GSSENCRequest
                        framer.expect_startup()
    except ProtocolError:
        pass
    return frames


def write_seeds(sessions: list[tuple[bytearray, bytearray]]) -> dict[str, int]:
    for sub in ("protocol", "ddl", "versions"):
        shutil.rmtree(CORPUS / sub, ignore_errors=True)
        (CORPUS / sub).mkdir(parents=True)
    counts = {"protocol": 0, "ddl": 0, "versions": 0}

    def put(kind: str, data: bytes) -> None:
        data = data[:MAX_SEED]
        path = CORPUS / kind / hashlib.sha1(data).hexdigest()[:16]
        if not path.exists():
            path.write_bytes(data)
            counts[kind] += 1

    for client, server in sessions:
        put("protocol", b"\0" + bytes(client))
        put("protocol", b"\1" + bytes(server))
        frames = _client_frames(bytes(client))
        typed = [f for f in frames if f.type >= 0]
        if typed:
            put("versions", b"".join(f.raw for f in typed))
        parse = b""
        for frame in typed:
            if frame.type == ord("Q"):
                put("ddl", frame.raw[5:].rstrip(b"\0"))
                put("versions", frame.raw)
            elif frame.type == ord("P"):
                put("ddl", frame.raw[5:].split(b"\0")[1])
                parse = frame.raw
            elif frame.type == ord("B"):
                put("versions", parse + frame.raw)  # a Bind with the statement it runs
    return counts


def main() -> int:
    with EmbeddedPostgres() as pg:
        pg.create_role("fuzz", PASSWORD)
        pg.execute("CREATE DATABASE fuzz OWNER fuzz")
        relay = RecordingRelay(pg.port)
        try:
            steps: list[Callable[[], object]] = [
                lambda: psql_session(pg, relay.port),
                lambda: psycopg_session(relay.port),
                lambda: asyncio.run(asyncpg_session(relay.port)),
                lambda: pgbench_session(pg, relay.port),
            ]
            for step in steps:
                step()
        finally:
            relay.close()
        counts = write_seeds(relay.sessions)
    print(f"{len(relay.sessions)} sessions recorded; seeds: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
