"""0008_loader_refreshes: rollup refreshes the wealth_loader login may request; loader kept off ops bookkeeping."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0008"
down_revision = "0007"
upgrade, downgrade = sql_migration(__file__)
