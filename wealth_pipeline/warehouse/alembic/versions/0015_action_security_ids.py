"""0015_action_security_ids: the stable security_id on corporate actions and adjustment factors (and the adjusted bar/indicator views, the as-of function)."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0015"
down_revision = "0014"
upgrade, downgrade = sql_migration(__file__)
