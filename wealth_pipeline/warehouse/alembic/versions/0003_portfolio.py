"""0003_portfolio: Users, portfolios and transactions with row-level security."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0003"
down_revision = "0002"
upgrade, downgrade = sql_migration(__file__)
