"""SQL the proxy sends in place of what the client wrote.

Two kinds of replacement, both executed by Postgres itself so that the transaction semantics
(failed transaction blocks, implicit transactions of multi-statement strings, skipping to Sync in
the extended protocol) are exactly the server's:

- an ELECTRIC statement becomes a `CALL` of the matching `electric.*` procedure, with
  `proxy_tag` set: the procedure ends with a NOTICE (SQLSTATE `EXTAG`) carrying the command tag,
  which the session swallows, putting the tag into the following CommandComplete;
- a rejected statement becomes a DO block that raises the guard's error with every field;
  the `CONSTRAINT` field carries a marker (and, for syntax errors, the position) that the session
  turns back into a clean ErrorResponse.

Every value is passed as a quoted literal built here; no client text is ever spliced raw.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Final

from proxy.ddl import electric
from proxy.ddl.checks import Check, checks_json
from proxy.ddl.names import QualifiedName
from proxy.errors import GuardError

TAG_SQLSTATE: Final = "EXTAG"
ERROR_MARKER: Final = "electric-proxy"  # the CONSTRAINT field of rejections the proxy raised


def literal(value: str | None) -> str:
    """A SQL literal for `value`, correct whatever standard_conforming_strings says."""
    if value is None:
        return "NULL"
    body = value.replace("'", "''")
    if "\\" in body:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


def array(values: Sequence[str] | None) -> str:
    if values is None:
        return "NULL"
    return "ARRAY[" + ", ".join(literal(v) for v in values) + "]::text[]"


def _qualified(name: QualifiedName) -> str:
    # NULL schema: the procedure resolves the name through the session's real search_path.
    return f"{literal(name.schema)}, {literal(name.name)}"


def _scope(scope: QualifiedName | None) -> str:
    if scope is None:
        return "scope_schema => NULL, scope_table => NULL"
    return f"scope_schema => {literal(scope.schema)}, scope_table => {literal(scope.name)}"


def _role(role: electric.RoleSpec) -> str:
    return f"role_name => {literal(role.name)}, role_column => {array(role.column)}"


def _enable(cmd: electric.ElectricEnable, schema: str) -> str:
    return f"CALL {schema}.electrify({_qualified(cmd.table)}, proxy_tag => {literal(cmd.tag)})"


def _disable(cmd: electric.ElectricDisable, schema: str) -> str:
    return f"CALL {schema}.disable({_qualified(cmd.table)}, proxy_tag => {literal(cmd.tag)})"


def _privilege_args(cmd: electric.ElectricGrant | electric.ElectricRevoke) -> str:
    """What GRANT and REVOKE both pass: privileges, table, role, columns, scope."""
    return (
        f"privileges => {array(cmd.privileges)}, "
        f"schema_name => {literal(cmd.table.schema)}, table_name => {literal(cmd.table.name)}, "
        f"role_name => {literal(_role_text(cmd.role))}, columns => {array(cmd.columns)}, "
        f"{_scope(cmd.scope)}"
    )


def _assignment_args(cmd: electric.ElectricAssign | electric.ElectricUnassign) -> str:
    """What ASSIGN and UNASSIGN both pass: table, user column, role, scope."""
    return (
        f"schema_name => {literal(cmd.table.schema)}, "
        f"table_name => {literal(cmd.table.name)}, user_column => {literal(cmd.user_column)}, "
        f"{_role(cmd.role)}, {_scope(cmd.scope)}"
    )


def _grant(cmd: electric.ElectricGrant, schema: str) -> str:
    return (
        f"CALL {schema}.grant({_privilege_args(cmd)}, using_path => {array(cmd.using)}, "
        f"check_expr => {literal(cmd.check)}, proxy_tag => {literal(cmd.tag)})"
    )


def _revoke(cmd: electric.ElectricRevoke, schema: str) -> str:
    return f"CALL {schema}.revoke({_privilege_args(cmd)}, proxy_tag => {literal(cmd.tag)})"


def _assign(cmd: electric.ElectricAssign, schema: str) -> str:
    return (
        f"CALL {schema}.assign({_assignment_args(cmd)}, if_expr => {literal(cmd.if_expr)}, "
        f"proxy_tag => {literal(cmd.tag)})"
    )


def _unassign(cmd: electric.ElectricUnassign, schema: str) -> str:
    return f"CALL {schema}.unassign({_assignment_args(cmd)}, proxy_tag => {literal(cmd.tag)})"


def _sqlite(cmd: electric.ElectricSqlite, schema: str) -> str:
    return f"CALL {schema}.sqlite({literal(cmd.sql)}, proxy_tag => {literal(cmd.tag)})"


def _role_text(role: electric.RoleSpec) -> str | None:
    """GRANT/REVOKE name a role literally; a column-based role is written as its dotted path."""
    if role.name is not None:
        return role.name
    return ".".join(role.column) if role.column else None


_BUILDERS: Final[dict[type, Callable[..., str]]] = {
    electric.ElectricEnable: _enable,
    electric.ElectricDisable: _disable,
    electric.ElectricGrant: _grant,
    electric.ElectricRevoke: _revoke,
    electric.ElectricAssign: _assign,
    electric.ElectricUnassign: _unassign,
    electric.ElectricSqlite: _sqlite,
}


def electric_call(command: electric.ElectricCommand, schema: str = "electric") -> str:
    """The `CALL` that carries out an ELECTRIC statement inside the client's transaction."""
    return _BUILDERS[type(command)](command, schema)


def raising_statement(error: GuardError) -> str:
    """A DO block that makes Postgres raise `error`, as if the statement itself had failed."""
    marker = ERROR_MARKER if error.position is None else f"{ERROR_MARKER}:{error.position}"
    options = [
        f"ERRCODE = {literal(error.sqlstate)}",
        f"MESSAGE = {literal(error.message)}",
        f"CONSTRAINT = {literal(marker)}",
    ]
    for key, value in (
        ("DETAIL", error.detail),
        ("HINT", error.hint),
        ("SCHEMA", error.schema),
        ("TABLE", error.table),
        ("COLUMN", error.column),
    ):
        if value:
            options.append(f"{key} = {literal(value)}")
    tag = f"$ep{secrets.token_hex(4)}$"
    return f"DO {tag} BEGIN RAISE EXCEPTION USING {', '.join(options)}; END {tag}"


def marker_position(constraint: str) -> tuple[bool, int | None]:
    """Whether a CONSTRAINT field is the proxy's marker, and the position it carries."""
    if constraint == ERROR_MARKER:
        return True, None
    prefix = ERROR_MARKER + ":"
    if not constraint.startswith(prefix):
        return False, None
    suffix = constraint[len(prefix) :]
    if suffix.isdigit():
        return True, int(suffix)
    return suffix.isidentifier(), None  # a check of an injected group: `electric-proxy:group`


def guard_check_call(checks: Sequence[Check], schema: str = "electric", proxy_tag: str = "") -> str:
    """The `CALL` that verifies `checks` where it runs, under the session's real state."""
    return (
        f"CALL {schema}.guard_check({literal(checks_json(checks))}::jsonb, proxy_tag => {literal(proxy_tag)})"
    )


def run_checked_call(checks: Sequence[Check], sql: str, tag: str, schema: str = "electric") -> str:
    """One statement for a Parse: verify `checks`, then run `sql` (the client's DDL) as written,
    and report `tag` as its command tag."""
    return (
        f"CALL {schema}.run_checked({literal(checks_json(checks))}::jsonb, {literal(sql)}, "
        f"proxy_tag => {literal(tag)})"
    )


def unwrap_checked(fields: dict[str, str]) -> None:
    """Turn an error or notice raised by the DDL that `run_checked` executed into the one the
    DDL would have raised on its own: without the two context lines of our EXECUTE, and with
    the position in the client's statement where the server reported it as internal."""
    lines = fields.get("W", "").split("\n")
    ours = next((i for i, line in enumerate(lines) if ".run_checked(" in line), None)
    if ours is None:
        return
    start = ours - 1 if ours > 0 and lines[ours - 1].startswith("SQL statement ") else ours
    own_error = start == 0  # raised by the statement itself, not by something it called
    kept = lines[:start] + lines[ours + 1 :]
    if kept:
        fields["W"] = "\n".join(kept)
    else:
        fields.pop("W", None)
    if own_error and fields.get("p", "").isdigit():
        fields["P"] = fields.pop("p")
        fields.pop("q", None)
