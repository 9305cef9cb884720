"""0010_data_rights: per-partition source lineage, export audit and licence entitlements (issue 22)."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0010"
down_revision = "0009"
upgrade, downgrade = sql_migration(__file__)
