"""Warehouse roles: an owner for migrations, a loader for the pipeline, a read-only BI group.

Roles are cluster-wide (shared by every database on the server), so everything here is idempotent
and never drops a group role: a database can be created, migrated and dropped many times on the same
server. Database-level privileges (schemas, tables, row-level security) live in the migrations.

* ``wealth_owner`` (NOLOGIN) owns every schema and object; migrations run ``SET ROLE wealth_owner``.
  The embedded default gives it LOGIN with a generated password for dbt (``WEALTH_DBT_DATABASE_URL``),
  which builds the marts as the owner.
  With TimescaleDB the role gets the LOGIN attribute but no password: TimescaleDB runs compression and
  refresh policies as the owner of the hypertable and refuses to schedule them for a NOLOGIN owner;
  without a password nobody can log in as it through password (scram/md5) authentication.
* ``wealth_loader`` writes ref/market/analytics/portfolio/models/ops. It sees every portfolio row
  through an explicit ``pipeline_all`` policy (no BYPASSRLS attribute, which needs a superuser). It
  owns nothing and is a member of nothing: what needs the owner (rollup refreshes) goes through the
  owner's SECURITY DEFINER entry points (migrations 0002 and 0008). The embedded default's pipeline
  connects as it.
* ``wealth_bi`` reads ref/market/analytics/models/marts, and portfolio tables only through row-level
  security: a BI login sees the portfolios whose owner's ``portfolio.users.login_role`` equals its
  ``session_user``. ``session_user`` (not ``current_user``) cannot be changed by ``SET ROLE``, so a BI
  user cannot pretend to be someone else; a login without a mapping sees no portfolio rows.

Passwords come from the environment (``WEALTH_OWNER_PASSWORD``, ``WEALTH_LOADER_PASSWORD``, ``WEALTH_BI_PASSWORD``) or from the
caller, and are sent to the server as SCRAM verifiers computed client-side, never as plain text.
"""

from __future__ import annotations

import os
import re

import psycopg
from psycopg import sql

OWNER = "wealth_owner"
LOADER = "wealth_loader"
BI = "wealth_bi"
GROUP_ROLES: tuple[str, ...] = (OWNER, LOADER, BI)

LOGIN_PASSWORD_ENV: dict[str, str] = {
    OWNER: "WEALTH_OWNER_PASSWORD",  # dbt's login (WEALTH_DBT_DATABASE_URL); migrations need none
    LOADER: "WEALTH_LOADER_PASSWORD",
    BI: "WEALTH_BI_PASSWORD",
}

_MAX_ROLE_NAME_BYTES = 63


class RoleError(ValueError):
    """A role could not be created or mapped (bad name, privileged role, unknown user)."""


def _role_attributes(conn: psycopg.Connection, role: str) -> dict[str, bool] | None:
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, rolcanlogin "
        "FROM pg_roles WHERE rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        return None
    keys = ("super", "createrole", "createdb", "bypassrls", "replication", "login")
    return dict(zip(keys, row, strict=True))


def _create_role(conn: psycopg.Connection, role: str, options: sql.Composable) -> bool:
    """CREATE ROLE unless it exists; tolerate a concurrent creator (another database migrating)."""
    if _role_attributes(conn, role) is not None:
        return False
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), options))
    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        return False
    return True


def _is_superuser(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def restrict_database_access(conn: psycopg.Connection, allowed: tuple[str, ...] = ()) -> None:
    """No ``CONNECT`` or ``TEMPORARY`` for PUBLIC on the connected database (PostgreSQL's defaults).

    Only superusers, the database owner, the connecting role and the ``allowed`` roles (and their
    members) can then connect; so a BI login cannot open a session on, or create temporary tables
    in, a database it has no business in (the Dagster instance database). Idempotent.
    """
    db = sql.Identifier(conn.info.dbname)
    conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
    if not _is_superuser(conn):
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO CURRENT_USER").format(db))
    for role in allowed:
        if _role_attributes(conn, role) is not None:
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, sql.Identifier(role)))


def ensure_group_roles(conn: psycopg.Connection, *, owner_login: bool = False) -> None:
    """Create the three group roles if missing (idempotent, cluster-wide), and let only them connect.

    ``owner_login`` gives ``wealth_owner`` the LOGIN attribute (no password), which TimescaleDB
    requires of the owner of a hypertable with background policies. The connecting role needs
    CREATEROLE (or superuser); a non-superuser is made a member of ``wealth_owner`` so that
    migrations can ``SET ROLE`` to it. The connected (warehouse) database loses PostgreSQL's
    PUBLIC ``CONNECT``/``TEMPORARY`` defaults: the three roles (hence every BI login) get ``CONNECT``,
    see :func:`restrict_database_access`.
    """
    nologin = sql.SQL("NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
    for role in GROUP_ROLES:
        _create_role(conn, role, nologin)
    attrs = _role_attributes(conn, OWNER)
    if owner_login and attrs is not None and not attrs["login"]:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(OWNER)))
    if not _is_superuser(conn):
        member = conn.execute(
            "SELECT pg_has_role(current_user, %s, 'MEMBER')", (OWNER,)
        ).fetchone()
        if not (member and member[0]):
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(OWNER)))
    restrict_database_access(conn, GROUP_ROLES)


def _scram_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password``, computed by libpq on the client side."""
    encrypted = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return encrypted.decode()


def _set_password(conn: psycopg.Connection, role: str, password: str) -> None:
    conn.execute(
        sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(_scram_verifier(conn, role, password))
        )
    )


def set_login_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """Give ``role`` LOGIN and ``password`` (sent as a SCRAM verifier). Needs CREATEROLE (or superuser)."""
    if not password:
        raise RoleError(f"an empty password is not allowed for login {role!r}")
    _set_password(conn, role, password)


def ensure_login_roles(conninfo: str) -> list[str]:
    """Give ``wealth_owner`` / ``wealth_loader`` / ``wealth_bi`` LOGIN and a password when their variable is set.

    Returns the roles that were updated. A variable that is unset or empty leaves the role as it is
    (NOLOGIN after creation). Needs CREATEROLE (or superuser).
    """
    updated: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_group_roles(conn)
        for role, variable in LOGIN_PASSWORD_ENV.items():
            password = os.environ.get(variable)
            if password:
                _set_password(conn, role, password)
                updated.append(role)
    return updated


def validate_login_role(login_role: str) -> str:
    """Reject names that cannot be (or must not be) a per-user BI login."""
    if not isinstance(login_role, str) or not login_role:
        raise RoleError("login_role must be a non-empty string")
    if len(login_role.encode()) > _MAX_ROLE_NAME_BYTES:
        raise RoleError(f"login_role {login_role!r} is longer than {_MAX_ROLE_NAME_BYTES} bytes")
    if "\x00" in login_role:
        raise RoleError(f"login_role {login_role!r} contains a NUL character")
    if login_role in GROUP_ROLES or re.match(r"(?i)^pg_", login_role) or login_role.lower() == "public":
        raise RoleError(f"login_role {login_role!r} is reserved")
    return login_role


def create_bi_user(conninfo: str, user_id: str, login_role: str, password: str) -> None:
    """Create (or update) a BI login role, member of ``wealth_bi``, mapped to ``user_id``.

    The role gets LOGIN and the password (sent as a SCRAM verifier). ``portfolio.users`` gets the
    mapping ``login_role`` for ``user_id`` (the user row is created with ``display_name = user_id``
    when missing). Refuses an existing role with elevated attributes (superuser, createrole,
    createdb, replication, bypassrls) or one already mapped to another user. Needs CREATEROLE and
    write access to ``portfolio.users`` (the migration connection's privileges).
    """
    validate_login_role(login_role)
    if not isinstance(user_id, str) or not user_id:
        raise RoleError("user_id must be a non-empty string")
    if not password:
        raise RoleError(f"an empty password is not allowed for BI login {login_role!r}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_group_roles(conn)
        attrs = _role_attributes(conn, login_role)
        if attrs is not None:
            elevated = [k for k in ("super", "createrole", "createdb", "replication", "bypassrls") if attrs[k]]
            if elevated:
                raise RoleError(
                    f"role {login_role!r} already exists with elevated attributes {elevated}; "
                    "refusing to turn it into a BI login"
                )
            pipeline = conn.execute(
                "SELECT array_agg(g) FROM unnest(%s::text[]) g WHERE pg_has_role(%s, g, 'MEMBER')",
                ([OWNER, LOADER], login_role),
            ).fetchone()
            if pipeline and pipeline[0]:
                raise RoleError(
                    f"role {login_role!r} is a member of {pipeline[0]}; a BI login must not be a pipeline role"
                )
        with conn.transaction():
            if attrs is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT").format(
                        sql.Identifier(login_role)
                    )
                )
            _set_password(conn, login_role, password)
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(BI), sql.Identifier(login_role)))
            taken = conn.execute(
                "SELECT user_id FROM portfolio.users WHERE login_role = %s AND user_id <> %s",
                (login_role, user_id),
            ).fetchone()
            if taken:
                raise RoleError(f"login role {login_role!r} is already mapped to user {taken[0]!r}")
            conn.execute(
                "INSERT INTO portfolio.users (user_id, display_name, login_role) VALUES (%s, %s, %s) "
                "ON CONFLICT (user_id) DO UPDATE SET login_role = EXCLUDED.login_role",
                (user_id, user_id, login_role),
            )


def drop_bi_user(conninfo: str, login_role: str) -> bool:
    """Remove a BI login: clear its mapping in this database, then drop the role if it exists.

    Returns False when the role did not exist. The role must own nothing (BI logins never do).
    """
    validate_login_role(login_role)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        mapped = conn.execute("SELECT to_regclass('portfolio.users') IS NOT NULL").fetchone()
        if mapped and mapped[0]:
            conn.execute("UPDATE portfolio.users SET login_role = NULL WHERE login_role = %s", (login_role,))
        if _role_attributes(conn, login_role) is None:
            return False
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login_role)))
        return True
