{{ config(materialized='ephemeral') }}
select portfolio_id, session_date, daily_twr, cumulative_twr, mwr_since_inception,
       volatility_30, volatility_90, volatility_252, sharpe_252, max_drawdown, beta_252
from {{ source('portfolio', 'portfolio_metrics') }}
