"""0013_row_sources: a source column (rights-registry provider key) on every market-data table (issue 22)."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0013"
down_revision = "0012"
upgrade, downgrade = sql_migration(__file__)
