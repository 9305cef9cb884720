"""0005_portfolio_analytics: daily positions, cash, valuations, metrics, currency attribution, factor exposures."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0005"
down_revision = "0004"
upgrade, downgrade = sql_migration(__file__)
