{{ config(materialized='ephemeral') }}
select portfolio_id, session_date, base_currency, positions_value_base, cash_base, total_value_base,
       net_external_flow_base
from {{ source('portfolio', 'valuations') }}
