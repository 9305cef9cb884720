"""0002_market: Reference and market data, time-series tables (hypertables with TimescaleDB) and OHLCV rollups."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0002"
down_revision = "0001"
upgrade, downgrade = sql_migration(__file__)
