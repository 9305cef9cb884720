"""0017_rollup_tables: plain PostgreSQL rollups as tables refreshed per loaded window (continuous aggregates unchanged)."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0017"
down_revision = "0016"
upgrade, downgrade = sql_migration(__file__)
