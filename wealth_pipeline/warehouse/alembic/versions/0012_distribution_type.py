"""0012_distribution_type: market.corporate_actions keyed by distribution_type too (several distributions per ex-date)."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0012"
down_revision = "0011"
upgrade, downgrade = sql_migration(__file__)
