"""Finding the replies to injected calls among a batch's replies."""

from __future__ import annotations

from proxy.ddl.capture import capture_call, drop_injected_tail, note_version_call, statement_objects
from proxy.ddl.classify import classify
from proxy.protocol import messages
from proxy.protocol.codes import Backend
from proxy.protocol.framer import Frame


def f(code: int, body: bytes = b"") -> Frame:
    return Frame(code, messages.message(code, body))


def err(context: str = "") -> Frame:
    fields = {"S": "ERROR", "C": "XX000", "M": "boom"} | ({"W": context} if context else {})
    return Frame(Backend.ERROR_RESPONSE, messages.encode_error_fields(fields))


P, B, C, CL, Z, N = (
    Backend.PARSE_COMPLETE,
    Backend.BIND_COMPLETE,
    Backend.COMMAND_COMPLETE,
    Backend.CLOSE_COMPLETE,
    Backend.READY_FOR_QUERY,
    Backend.NOTICE_RESPONSE,
)
OURS = [P, B, C, CL, CL]


def types(frames: list[Frame]) -> list[int]:
    return [x.type for x in frames]


def test_injected_group_ran_and_is_dropped() -> None:
    client = [f(P), f(B), f(N), f(C)]
    frames = client + [f(t) for t in OURS[:2]] + [f(N), *[f(t) for t in OURS[2:]], f(Z, b"I")]
    assert types(drop_injected_tail(frames)) == [P, B, N, C, Z]


def test_client_error_means_the_group_never_ran() -> None:
    frames = [f(P), f(B), err(), f(Z, b"E")]
    assert drop_injected_tail(frames) == frames


def test_failed_capture_keeps_its_error_only() -> None:
    frames = [
        f(P),
        f(B),
        f(C),
        f(P),
        f(B),
        err("PL/pgSQL function electric.capture(jsonb,jsonb,text) line 3"),
        f(Z, b"E"),
    ]
    assert types(drop_injected_tail(frames)) == [P, B, C, Backend.ERROR_RESPONSE, Z]


def test_two_groups() -> None:
    frames = [f(C)] + [f(t) for t in OURS * 2] + [f(Z, b"I")]
    assert types(drop_injected_tail(frames, 2)) == [C, Z]


def test_capture_call_is_one_statement_whatever_the_text() -> None:
    from pglast.parser import parse_sql_json

    stmt = classify("COMMENT ON TABLE t IS $$'); DROP TABLE t; --$$")[0]
    call = capture_call([stmt], {"application_name": "x'); DROP TABLE y; --"})
    assert parse_sql_json(call).count('"stmt"') == 1


def objects(sql: str) -> list[tuple[str | None, str, str | None]]:
    return [(o["schema"], o["name"], o["type"]) for o in statement_objects(classify(sql)[0])]


def test_objects_carry_their_type_not_the_verb() -> None:
    """The catalog reads definitions of tables and indexes: 'create table' would be dropped."""
    assert objects("CREATE TABLE s.t (id int)") == [("s", "t", "table")]
    assert objects("ALTER TABLE t ADD COLUMN b int") == [(None, "t", "table")]
    assert objects("DROP TABLE t, s.u") == [(None, "t", "table"), ("s", "u", "table")]
    assert objects("CREATE SEQUENCE sq") == [(None, "sq", "sequence")]
    assert objects("ALTER TABLE t ENABLE ELECTRIC") == [(None, "t", "table")]


def test_create_index_touches_its_table_and_itself() -> None:
    assert objects("CREATE UNIQUE INDEX ix ON s.t (a)") == [("s", "t", "table"), ("s", "ix", "index")]


def test_renamed_relations_are_touched_under_both_names() -> None:
    assert objects("ALTER TABLE t RENAME TO u") == [(None, "t", "table"), (None, "u", "table")]
    assert objects("ALTER INDEX s.ix RENAME TO iy") == [("s", "ix", "index"), ("s", "iy", "index")]
    assert objects("ALTER TABLE t RENAME CONSTRAINT c TO d") == [(None, "t", "table")]
    assert objects("ALTER TABLE t SET SCHEMA s") == [(None, "t", "table"), ("s", "t", "table")]


def test_note_version_call_passes_only_what_it_is_given() -> None:
    assert (
        note_version_call("alembic", "a1") == "CALL electric.note_version('alembic', 'a1', proxy_tag => '')"
    )
    call = note_version_call(
        "prisma", "2024_init", proxy_tag=None, before_ddl=True, meta={"client_addr": "10.0.0.1:5000"}
    )
    assert call == (
        "CALL electric.note_version('prisma', '2024_init', before_ddl => true, "
        """meta => '{"client_addr": "10.0.0.1:5000"}'::jsonb)"""
    )
    late = note_version_call("django", "shop.0003", late=True, before_ddl=False, proxy_tag=None)
    assert late == "CALL electric.note_version_late('django', 'shop.0003')"


def test_failed_note_inside_its_definer_procedure_keeps_its_error_only() -> None:
    context = "PL/pgSQL function electric._note(text,text,text,jsonb,timestamp with time zone,text) line 9"
    frames = [f(C), f(P), f(B), err(context), f(Z, b"E")]
    assert types(drop_injected_tail(frames)) == [C, Backend.ERROR_RESPONSE, Z]
