"""0004_analytics: Analytics: technical indicators and rolling factor exposures per security and session."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0004"
down_revision = "0003"
upgrade, downgrade = sql_migration(__file__)
