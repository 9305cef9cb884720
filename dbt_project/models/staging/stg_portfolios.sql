{{ config(materialized='ephemeral') }}
-- Ephemeral: inlined into the security_invoker mart, never a relation of its own that could read
-- portfolio rows with its owner's rights.
select portfolio_id, owner_id, name as portfolio_name, base_currency, benchmark
from {{ source('portfolio', 'portfolios') }}
