"""0009_adjustment_factors: point-in-time bars (cum_factor), the bitemporal factor table, adjusted-on-read views and the as-of function."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0009"
down_revision = "0008"
upgrade, downgrade = sql_migration(__file__)
