"""What a backup records about a database so a restore can prove it got the same content back.

* ``table_checksums``: per table, materialized view and continuous aggregate in the user schemas,
  the row count and an order-independent checksum (the sum of each row's md5, as two 60-bit halves),
  computed on the server in the transaction whose snapshot ``pg_dump`` exports. Rows are rendered
  with ``TimeZone=UTC`` and ``DateStyle=ISO`` so the text (and so the checksum) does not depend on
  the session.
* ``dagster_summary``: the Dagster instance's run history (count per status, a digest of every run
  id) and asset state (asset keys, event count), read from dagster-postgres' tables.
* ``role_snapshot``: the cluster roles the warehouse needs (the three group roles, their members and
  every non-superuser owning objects), with attributes, memberships and SCRAM password verifiers.
  Roles are cluster-wide, so ``pg_dump`` of a database does not carry them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from wealth_pipeline.warehouse import roles as warehouse_roles

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def prepare_session(conn: psycopg.Connection) -> None:
    """Session settings that make row text (and so checksums) independent of client defaults."""
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.execute("SET IntervalStyle = 'postgres'")
    conn.execute("SET extra_float_digits = 1")


def checksum_relations(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(schema, name) of every user table, materialized view and continuous aggregate, sorted."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
          AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%'
          AND n.nspname NOT LIKE '\\_timescaledb%%' AND n.nspname NOT LIKE 'timescaledb\\_%%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
        """,
        (list(_SYSTEM_SCHEMAS),),
    ).fetchall()
    relations = {(s, n) for s, n in rows}
    has_caggs = conn.execute("SELECT to_regclass('timescaledb_information.continuous_aggregates') IS NOT NULL").fetchone()[0]
    if has_caggs:
        relations |= {(s, n) for s, n in conn.execute(
            "SELECT view_schema, view_name FROM timescaledb_information.continuous_aggregates").fetchall()}
    return sorted(relations)


def table_checksum(conn: psycopg.Connection, schema: str, name: str) -> dict[str, Any]:
    """{rows, checksum} of one relation (order independent)."""
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint), 0)::text, "
        "coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint), 0)::text "
        "FROM (SELECT md5(t::text) AS h FROM {}.{} t) s"
    ).format(sql.Identifier(schema), sql.Identifier(name))
    count, low, high = conn.execute(query).fetchone()
    return {"rows": int(count), "checksum": hashlib.sha256(f"{count}:{low}:{high}".encode()).hexdigest()[:32]}


def table_checksums(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """``schema.name`` -> {rows, checksum} for every relation of :func:`checksum_relations`."""
    prepare_session(conn)
    return {f"{s}.{n}": table_checksum(conn, s, n) for s, n in checksum_relations(conn)}


def database_size(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def dagster_summary(conn: psycopg.Connection) -> dict[str, Any]:
    """Run history and asset state of a dagster-postgres database (empty dict when it has none)."""
    present = {name for (name,) in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()}
    if "runs" not in present:
        return {}
    by_status = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status").fetchall())
    run_ids = [r for (r,) in conn.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]
    summary: dict[str, Any] = {
        "runs": len(run_ids),
        "runs_by_status": {k: int(v) for k, v in by_status.items()},
        "run_ids_sha256": hashlib.sha256("\n".join(run_ids).encode()).hexdigest(),
        "table_rows": {},
    }
    for table in sorted(present):
        summary["table_rows"][table] = int(conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0])
    if "asset_keys" in present:
        summary["asset_keys"] = sorted(k for (k,) in conn.execute("SELECT asset_key FROM asset_keys").fetchall())
    return summary


def role_snapshot(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The roles a restored warehouse needs, with attributes, memberships and password verifiers.

    Password verifiers (SCRAM hashes, never plain text) are read from ``pg_authid``, which needs a
    superuser; without one they are left out and ``db upgrade`` sets the pipeline passwords again
    from the environment.
    """
    can_read_authid = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    groups = list(warehouse_roles.GROUP_ROLES)
    names = {r for (r,) in conn.execute(
        """
        SELECT r.rolname FROM pg_roles r WHERE r.rolname = ANY(%(groups)s)
           OR r.oid IN (SELECT m.member FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = ANY(%(groups)s))
           OR r.oid IN (SELECT relowner FROM pg_class UNION SELECT nspowner FROM pg_namespace)
        """, {"groups": groups}).fetchall()}
    snapshot = []
    for name in sorted(names):
        row = conn.execute(
            "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if row[0] or name.startswith("pg_"):
            continue  # superusers and built-in roles belong to the server, not to the warehouse
        member_of = [g for (g,) in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1", (name,)).fetchall()]
        verifier = None
        if can_read_authid:
            verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()[0]
        snapshot.append({
            "name": name, "inherit": row[1], "createrole": row[2], "createdb": row[3], "login": row[4],
            "replication": row[5], "bypassrls": row[6], "member_of": member_of, "password_verifier": verifier,
        })
    # Groups before their members.
    return sorted(snapshot, key=lambda r: (r["name"] not in groups, r["name"]))


def restore_roles(conn: psycopg.Connection, snapshot: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Create the snapshot's roles that the server lacks and grant their memberships.

    Existing roles are left as they are (their passwords are not overwritten). Returns the created
    and the kept role names.
    """
    created, kept = [], []
    for role in snapshot:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role["name"],)).fetchone()
        if exists:
            kept.append(role["name"])
            continue
        options = [
            "INHERIT" if role["inherit"] else "NOINHERIT", "CREATEROLE" if role["createrole"] else "NOCREATEROLE",
            "CREATEDB" if role["createdb"] else "NOCREATEDB", "LOGIN" if role["login"] else "NOLOGIN",
            "REPLICATION" if role["replication"] else "NOREPLICATION", "BYPASSRLS" if role["bypassrls"] else "NOBYPASSRLS",
        ]
        statement = sql.SQL("CREATE ROLE {} NOSUPERUSER " + " ".join(options)).format(sql.Identifier(role["name"]))
        if role.get("password_verifier"):
            statement = statement + sql.SQL(" PASSWORD {}").format(sql.Literal(role["password_verifier"]))
        conn.execute(statement)
        created.append(role["name"])
    for role in snapshot:
        for group in role["member_of"]:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,)).fetchone():
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role["name"])))
    return {"created": created, "kept": kept}
