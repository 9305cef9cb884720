"""0007_timescale_bi_security: RLS on every BI route with TimescaleDB; secured rolling volatility on both flavours."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0007"
down_revision = "0006"
upgrade, downgrade = sql_migration(__file__)
