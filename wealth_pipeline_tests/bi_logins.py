"""BI logins for the row-level-security tests: alice and bob with unique role names, dropped afterwards."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealth_pipeline.warehouse.roles import create_bi_user, drop_bi_user


@contextmanager
def bi_logins(warehouse_url: str, users: tuple[str, ...] = ("alice", "bob")) -> Iterator[dict[str, str]]:
    """user -> login URL of a fresh BI role for each user (``db create-bi-user``), dropped on exit."""
    suffix = uuid.uuid4().hex[:8]
    created: dict[str, str] = {}
    try:
        for user in users:
            role, password = f"bi_{user}_{suffix}", secrets.token_urlsafe(12)
            create_bi_user(warehouse_url, user, role, password)
            created[user] = make_conninfo(warehouse_url, user=role, password=password)
        yield created
    finally:
        for url in created.values():
            drop_bi_user(warehouse_url, conninfo_to_dict(url)["user"])
