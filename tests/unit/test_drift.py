"""The pure drift diff (proxy/catalog/drift.py) on hand-built snapshots."""

from __future__ import annotations

from typing import Any

from proxy.catalog.drift import (
    Explanation,
    accepted_keys,
    adopt,
    changed_keys,
    diff,
    explains,
    reconcile,
    statement_names,
    statement_reach,
)
from proxy.catalog.snapshot import SchemaObject, Snapshot

SCHEMA = "schema:2200"
TABLE = "rel:100"


def obj(
    key: str,
    object_type: str,
    identity: str,
    name: str,
    *,
    schema: str | None = "public",
    parent: str | None = None,
    related: tuple[str, ...] = (),
    electrified: bool = False,
    **attrs: Any,
) -> SchemaObject:
    return SchemaObject(
        key=key,
        object_type=object_type,
        identity=identity,
        schema=schema,
        name=name,
        parent=parent,
        related=related,
        electrified=electrified,
        attrs={"name": name, **attrs},
    )


def table(name: str = "t", key: str = TABLE, electrified: bool = False, **attrs: Any) -> SchemaObject:
    return obj(key, "table", f"public.{name}", name, related=(SCHEMA,), electrified=electrified, **attrs)


def column(
    name: str,
    attnum: int,
    type_: str = "integer",
    table_name: str = "t",
    electrified: bool = False,
    **attrs: Any,
) -> SchemaObject:
    return obj(
        f"col:100:{attnum}",
        "column",
        f"public.{table_name}.{name}",
        name,
        parent=TABLE,
        related=("type:23",),
        electrified=electrified,
        type=type_,
        **attrs,
    )


def index(name: str, key: str = "rel:200", definition: str = "CREATE INDEX ...") -> SchemaObject:
    return obj(key, "index", f"public.{name}", name, parent=TABLE, definition=definition)


def snap(*objects: SchemaObject) -> Snapshot:
    return Snapshot.build(objects)


BASE = snap(
    obj(SCHEMA, "schema", "public", "public", schema=None),
    table(),
    column("id", 1, not_null=True),
    column("a", 2, type_="text"),
    index("t_a_idx"),
)


def only(changes: list[Any]) -> Any:
    assert len(changes) == 1, changes
    return changes[0]


def test_identical_snapshots_have_no_drift() -> None:
    assert diff(BASE, BASE) == []
    assert changed_keys(BASE, snap(*BASE.objects.values())) == set()


def test_added_column_is_medium_and_critical_when_electrified() -> None:
    change = only(diff(BASE, snap(*BASE.objects.values(), column("b", 3))))
    assert (change.identity, change.object_type, change.change, change.severity) == (
        "public.t.b",
        "column",
        "added",
        "medium",
    )
    hot = column("b", 3, electrified=True)
    assert only(diff(BASE, snap(*BASE.objects.values(), hot))).severity == "critical"


def test_dropped_column_is_high() -> None:
    live = snap(*(o for o in BASE.objects.values() if o.key != "col:100:2"))
    change = only(diff(BASE, live))
    assert (change.identity, change.change, change.severity) == ("public.t.a", "removed", "high")


def test_renamed_column_keeps_its_key_and_says_what_it_was() -> None:
    objects = {**BASE.objects, "col:100:2": column("b", 2, type_="text")}
    change = only(diff(BASE, snap(*objects.values())))
    assert change.change == "renamed"
    assert change.severity == "high"
    assert change.previous_identity == "public.t.a"
    assert change.detail()["attributes"] == {"name": {"expected": "a", "actual": "b"}}


def test_type_change_is_high_with_expected_and_actual() -> None:
    objects = {**BASE.objects, "col:100:2": column("a", 2, type_="bigint")}
    change = only(diff(BASE, snap(*objects.values())))
    assert (change.change, change.severity) == ("modified", "high")
    assert change.detail()["attributes"]["type"] == {"expected": "text", "actual": "bigint"}


def test_set_not_null_is_high_and_drop_not_null_medium() -> None:
    tightened = {**BASE.objects, "col:100:2": column("a", 2, type_="text", not_null=True)}
    assert only(diff(BASE, snap(*tightened.values()))).severity == "high"
    loosened = {**BASE.objects, "col:100:1": column("id", 1)}
    assert only(diff(BASE, snap(*loosened.values()))).severity == "medium"


def test_index_added_is_low_and_removed_medium() -> None:
    added = only(diff(BASE, snap(*BASE.objects.values(), index("t_b_idx", key="rel:201"))))
    assert (added.change, added.severity) == ("added", "low")
    live = snap(*(o for o in BASE.objects.values() if o.key != "rel:200"))
    removed = only(diff(BASE, live))
    assert (removed.object_type, removed.change, removed.severity) == ("index", "removed", "medium")


def test_table_rename_is_one_change_not_one_per_column() -> None:
    live = snap(
        obj(SCHEMA, "schema", "public", "public", schema=None),
        table("u"),
        column("id", 1, table_name="u", not_null=True),
        column("a", 2, type_="text", table_name="u"),
        index("t_a_idx"),
    )
    change = only(diff(BASE, live))
    assert (change.identity, change.change, change.previous_identity) == ("public.u", "renamed", "public.t")


def test_rename_folds_the_definitions_that_only_echo_it() -> None:
    pkey = index(
        "t_pkey", key="rel:201", definition="CREATE UNIQUE INDEX t_pkey ON public.t USING btree (id)"
    )
    view = obj(
        "rel:400", "view", "public.v", "v", related=(SCHEMA, TABLE), query=" SELECT t.a FROM public.t;"
    )
    before = snap(*BASE.objects.values(), pkey, view)
    moved_pkey = index(
        "t_pkey", key="rel:201", definition="CREATE UNIQUE INDEX t_pkey ON public.u USING btree (id)"
    )
    moved_view = obj(
        "rel:400", "view", "public.v", "v", related=(SCHEMA, TABLE), query=" SELECT u.a FROM public.u;"
    )
    renamed = table("u")
    after = snap(*{**before.objects, TABLE: renamed, "rel:201": moved_pkey, "rel:400": moved_view}.values())
    change = only(diff(before, after))
    assert change.change == "renamed" and set(change.keys) == {TABLE, "rel:201", "rel:400"}
    # A real change beside the rename is still reported.
    other = obj(
        "rel:400", "view", "public.v", "v", related=(SCHEMA, TABLE), query=" SELECT u.id FROM public.u;"
    )
    after = snap(*{**after.objects, "rel:400": other}.values())
    assert {c.identity for c in diff(before, after)} == {"public.u", "public.v"}


def test_new_table_folds_its_columns_and_indexes() -> None:
    new = obj("rel:300", "table", "public.n", "n", related=(SCHEMA,))
    col = obj("col:300:1", "column", "public.n.id", "id", parent="rel:300")
    idx = obj("rel:301", "index", "public.n_pkey", "n_pkey", parent="rel:300")
    change = only(diff(BASE, snap(*BASE.objects.values(), new, col, idx)))
    assert (change.identity, change.change, change.severity) == ("public.n", "added", "medium")
    assert set(change.keys) == {"rel:300", "col:300:1", "rel:301"}


def test_dropped_and_recreated_table_is_one_modification() -> None:
    again = obj("rel:999", "table", "public.t", "t", related=(SCHEMA,), comment="new")
    live = snap(obj(SCHEMA, "schema", "public", "public", schema=None), again)
    changes = diff(BASE, live)
    table_change = next(c for c in changes if c.object_type == "table")
    assert table_change.change == "modified" and table_change.detail()["recreated"] is True
    # The old table's columns and index went with it: folded into nothing else, reported removed.
    assert {c.identity for c in changes if c.change == "removed"} == {
        "public.t.id",
        "public.t.a",
        "public.t_a_idx",
    }


def test_grant_and_comment_only_changes_are_low() -> None:
    objects = {**BASE.objects, TABLE: table(acl=["alice=r/alice"])}
    change = only(diff(BASE, snap(*objects.values())))
    assert (change.change, change.severity) == ("modified", "low")
    assert change.detail()["attributes"]["acl"]["actual"] == ["alice=r/alice"]


def test_policy_change_on_electrified_table_is_critical() -> None:
    policy = obj("pol:1", "policy", "p on public.t", "p", parent=TABLE, electrified=True, using="(id > 0)")
    before = snap(*BASE.objects.values(), policy)
    changed = obj("pol:1", "policy", "p on public.t", "p", parent=TABLE, electrified=True, using="(id > 1)")
    change = only(diff(before, snap(*BASE.objects.values(), changed)))
    assert (change.object_type, change.severity) == ("policy", "critical")


def test_explained_by_name_of_the_table_or_its_schema() -> None:
    live = snap(*BASE.objects.values(), column("b", 3))
    assert explains(Explanation(names=frozenset({("public", "t")})), "col:100:3", BASE, live)
    assert explains(Explanation(names=frozenset({(None, "t")})), "col:100:3", BASE, live)
    # A schema explains its objects' changes only when it changed itself.
    assert not explains(Explanation(names=frozenset({(None, "public")})), "col:100:3", BASE, live)
    renamed = snap(*live.objects.values(), obj(SCHEMA, "schema", "main", "main", schema=None))
    assert explains(Explanation(names=frozenset({(None, "public")})), "col:100:3", BASE, renamed)
    assert not explains(Explanation(names=frozenset({("public", "other")})), "col:100:3", BASE, live)
    # A column is not a namespace object: its name alone explains nothing.
    assert not explains(Explanation(names=frozenset({("public", "b")})), "col:100:3", BASE, live)
    assert explains(Explanation(logged={TABLE: True}), "col:100:3", BASE, live)
    assert not explains(Explanation(), "col:100:3", BASE, live)


def test_the_ddl_log_decides_before_the_names() -> None:
    live = snap(*BASE.objects.values(), column("b", 3))
    named = frozenset({("public", "t")})
    # The latest command on the table ran outside any migration: drift, whatever names say.
    assert not explains(Explanation(names=named, logged={TABLE: False}), "col:100:3", BASE, live)
    # The nearest logged object wins: the column itself was last changed by a migration.
    assert explains(Explanation(logged={TABLE: False, "col:100:3": True}), "col:100:3", BASE, live)


def test_statement_names_are_generous_and_fold_like_postgres() -> None:
    names = statement_names('COMMENT ON COLUMN "Sales"."Order".total IS \'a "quoted" word\'')
    assert {("Sales", "Order"), (None, "Order"), (None, "total"), (None, "comment")} <= names
    assert (None, "quoted") not in names  # string literals are not names
    names = statement_names("CREATE POLICY p ON Inventory.Item USING (id > 0)")
    assert {("inventory", "item"), (None, "p"), (None, "item")} <= names
    assert ("Inventory", "Item") not in names
    assert ("item", "id") not in statement_names("ALTER TABLE item ADD id int")


def test_statement_reach_of_schema_wide_and_unnamed_statements() -> None:
    assert statement_reach('GRANT SELECT ON ALL TABLES IN SCHEMA public, "Sales" TO reader') == (
        frozenset({"public", "Sales"}),
        False,
    )
    assert statement_reach("REVOKE ALL ON ALL SEQUENCES IN SCHEMA app FROM reader")[0] == {"app"}
    assert statement_reach("IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO local")[0] == {"local"}
    assert statement_reach("REASSIGN OWNED BY old_role TO new_role") == (frozenset(), True)
    assert statement_reach("GRANT SELECT ON public.t TO reader") == (frozenset(), False)
    live = snap(*BASE.objects.values(), column("b", 3))
    assert explains(Explanation(schemas=frozenset({"public"})), "col:100:3", BASE, live)
    assert not explains(Explanation(schemas=frozenset({"other"})), "col:100:3", BASE, live)
    assert explains(Explanation(everything=True), "col:100:3", BASE, live)


def test_view_dropped_by_cascade_is_explained_by_its_table() -> None:
    view = obj("rel:400", "view", "public.v", "v", related=(SCHEMA, TABLE), query="SELECT ...")
    before = snap(*BASE.objects.values(), view)
    assert explains(Explanation(names=frozenset({("public", "t")})), "rel:400", before, BASE)


def test_reconcile_adopts_explained_and_reports_the_rest() -> None:
    other = obj("rel:500", "table", "public.o", "o", related=(SCHEMA,))
    live = snap(*BASE.objects.values(), column("b", 3), other)
    result = reconcile(BASE, live, Explanation(names=frozenset({("public", "t")})))
    assert result.adopted == {"col:100:3"}
    assert [c.identity for c in result.drift] == ["public.o"]
    assert "col:100:3" in result.baseline.objects
    assert diff(result.baseline, live) == result.drift


def test_accept_by_identity_and_all() -> None:
    other = obj("rel:500", "table", "public.o", "o", related=(SCHEMA,))
    live = snap(*BASE.objects.values(), column("b", 3), other)
    changes = diff(BASE, live)
    keys, unknown = accepted_keys(changes, ["public.o", "public.nope"])
    assert keys == {"rel:500"} and unknown == {"public.nope"}
    after = adopt(BASE, live, keys)
    assert [c.identity for c in diff(after, live)] == ["public.t.b"]
    every, _ = accepted_keys(changes, None)
    assert diff(adopt(BASE, live, every), live) == []


def test_json_shape() -> None:
    change = only(diff(BASE, snap(*BASE.objects.values(), column("b", 3))))
    shaped = change.to_json({"role": "bob"})
    assert set(shaped) == {
        "identity",
        "object_type",
        "change",
        "severity",
        "electrified",
        "detail",
        "attribution",
    }
    assert shaped["attribution"] == {"role": "bob"}


def test_snapshot_objects_round_trip_through_json() -> None:
    for item in BASE.objects.values():
        assert SchemaObject.from_json(item.to_json()) == item


def test_drift_metrics_are_exposed_with_their_labels() -> None:
    from collections import Counter

    from prometheus_client import generate_latest

    from proxy.metrics import Stats, build_registry

    stats = Stats()
    stats.drift_open = Counter({"critical": 2, "low": 1})
    stats.drift_events["event_trigger"] += 3
    text = generate_latest(build_registry(stats)).decode()
    assert 'electric_proxy_drift_objects{severity="critical"} 2.0' in text
    assert 'electric_proxy_drift_objects{severity="high"} 0.0' in text
    assert 'electric_proxy_drift_events_total{source="event_trigger"} 3.0' in text
    assert 'electric_proxy_drift_events_total{source="scan"} 0.0' in text
