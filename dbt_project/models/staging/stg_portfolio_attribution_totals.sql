{{ config(materialized='ephemeral') }}
-- The portfolio-level rows of the currency attribution (symbol '__portfolio__').
select portfolio_id, session_date,
       local_return as attribution_local_return,
       fx_return as attribution_fx_return,
       interaction as attribution_interaction,
       base_return as attribution_base_return
from {{ source('portfolio', 'currency_attribution') }}
where symbol = '__portfolio__'
