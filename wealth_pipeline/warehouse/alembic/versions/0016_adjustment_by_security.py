"""0016_adjustment_by_security: the as-of-now latest factor and the as-of function keyed by security_id (one continuous chain across a ticker change)."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0016"
down_revision = "0015"
upgrade, downgrade = sql_migration(__file__)
