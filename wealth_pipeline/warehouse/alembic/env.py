"""Alembic environment of the warehouse: online only, one transaction per revision, run as wealth_owner.

Started by :mod:`wealth_pipeline.warehouse.migrate` (``wealth-pipeline db upgrade|downgrade|history|
current``), which holds the migration advisory lock and prepares the database first; the connection
details arrive in ``config.attributes``. The version pointer lives in ``ops.alembic_version``; every
applied or reverted revision is also written to ``ops.schema_migrations`` in its own transaction.
"""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from wealth_pipeline.warehouse import migrate, roles

config = context.config
conninfo = config.attributes.get("conninfo")
if context.is_offline_mode() or not conninfo:
    raise migrate.MigrationError(
        "the warehouse migrations run online through wealth-pipeline (db upgrade|downgrade|history|current), "
        "which prepares the database and holds the migration lock; offline --sql mode is not supported"
    )

engine = create_engine(
    "postgresql+psycopg://",
    creator=lambda: psycopg.connect(conninfo, application_name=migrate.APPLICATION_NAME),
    poolclass=NullPool,
)
with engine.connect() as connection:
    if config.attributes.get("as_owner"):
        # Session-level, committed before Alembic starts: every revision's objects belong to wealth_owner.
        connection.exec_driver_sql(f'SET ROLE "{roles.OWNER}"')
        connection.commit()
    context.configure(
        connection=connection,
        version_table=migrate.VERSION_TABLE,
        version_table_schema=migrate.VERSION_SCHEMA,
        transaction_per_migration=True,
        on_version_apply=[migrate.record_history],
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
