{#-
  Per portfolio and session: value, returns (TWR, MWR), risk (volatility, Sharpe, drawdown, beta)
  and the portfolio-level currency attribution. A view WITH (security_invoker = true) straight over
  the row-level-secured portfolio tables (its staging models are ephemeral), so a BI login sees only
  its own portfolios here too. Never a table or materialized view: those cannot carry the policies.
  The post-hook runs ops.enable_portfolio_rls, the migrations' function for portfolio relations.
-#}
{{ config(
    materialized='view',
    security_invoker=true,
    tags=['portfolio'],
    post_hook="select ops.enable_portfolio_rls('{{ this }}'::regclass)",
) }}

select
    v.portfolio_id,
    p.portfolio_name,
    p.owner_id,
    v.session_date,
    v.base_currency,
    p.benchmark,
    v.positions_value_base,
    v.cash_base,
    v.total_value_base,
    v.net_external_flow_base,
    m.daily_twr,
    m.cumulative_twr,
    m.mwr_since_inception,
    m.volatility_30,
    m.volatility_90,
    m.volatility_252,
    m.sharpe_252,
    m.max_drawdown,
    m.beta_252,
    a.attribution_local_return,
    a.attribution_fx_return,
    a.attribution_interaction,
    a.attribution_base_return
from {{ ref('stg_valuations') }} as v
join {{ ref('stg_portfolios') }} as p
    on p.portfolio_id = v.portfolio_id
left join {{ ref('stg_portfolio_metrics') }} as m
    on m.portfolio_id = v.portfolio_id and m.session_date = v.session_date
left join {{ ref('stg_portfolio_attribution_totals') }} as a
    on a.portfolio_id = v.portfolio_id and a.session_date = v.session_date
