"""0014_fact_security_ids: the stable security_id on every security-keyed fact table (indicators, factor exposures, predictions, positions, currency attribution)."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0014"
down_revision = "0013"
upgrade, downgrade = sql_migration(__file__)
