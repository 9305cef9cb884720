"""0006_models: Models: the registry of trained models and their daily cross-sectional predictions."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0006"
down_revision = "0005"
upgrade, downgrade = sql_migration(__file__)
