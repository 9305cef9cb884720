"""0001_foundation: schemas, grants, default privileges, the load audit table and the TimescaleDB helpers."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0001"
down_revision = None
upgrade, downgrade = sql_migration(__file__)
