"""0011_symbol_master: stable security_id and identifiers on ref.securities, securities history, index membership, ref.universe_as_of, bars' security_id."""

from wealth_pipeline.warehouse.migrate import sql_migration

revision = "0011"
down_revision = "0010"
upgrade, downgrade = sql_migration(__file__)
