{#-
  One row per security and session: the bar (raw and adjusted), the indicators of that session and
  the latest factor estimates known at that session (as-of join over the rows with an
  estimate: exposures start after the regression warm-up). Incremental by session window: Dagster
  passes the partition window as the start_date / end_date vars; the pre-hook deletes the window and
  delete+insert writes it again. The contract (marts.yml) fixes its columns and types, so a change of
  them fails the build (on_schema_change='fail') until the table is rebuilt with --full-refresh;
  its primary key (symbol, session_date) comes from the contract's constraint.
  Facts join on the stable security_id (issue 21), symbol kept for readability: the indicators of
  the bar's security and session, the latest exposures of the security (across a ticker change:
  estimates made under the former symbol count), and the master row of the symbol it traded under.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['symbol', 'session_date'],
    on_schema_change='fail',
    indexes=[{'columns': ['session_date']}, {'columns': ['security_id', 'session_date']}],
    pre_hook="{{ delete_session_window('session_date') }}",
) }}

with bars as (
    select *
    from {{ ref('stg_bars_daily') }}
    where {{ in_session_window('session_date') }}
)

select
    b.symbol,
    b.session_date,
    b.security_id,
    s.security_name,
    s.sector,
    s.asset_class,
    b.exchange,
    b.currency,
    b.open, b.high, b.low, b.close, b.volume,
    b.adj_factor,
    b.adj_open, b.adj_high, b.adj_low, b.adj_close, b.adj_volume,
    i.return_1d, i.log_return_1d,
    i.sma_20, i.sma_50, i.sma_200, i.ema_12, i.ema_26, i.rsi_14,
    i.bb_upper_20, i.bb_middle_20, i.bb_lower_20,
    i.macd, i.macd_signal, i.macd_hist, i.atr_14, i.stoch_k, i.stoch_d, i.obv,
    i.realized_vol_20, i.realized_vol_60,
    e.exposure_date,
    e.alpha, e.beta_market, e.beta_size, e.beta_value, e.beta_momentum, e.r_squared, e.residual_vol
from bars as b
left join {{ ref('stg_securities') }} as s
    on s.security_id = b.security_id and s.symbol = b.symbol
left join {{ ref('stg_indicators_daily') }} as i
    on i.security_id = b.security_id and i.session_date = b.session_date
left join lateral (
    select *
    from {{ ref('stg_factor_exposures') }} as fe
    where fe.security_id = b.security_id and fe.exposure_date <= b.session_date and fe.beta_market is not null
    order by fe.exposure_date desc
    limit 1
) as e on true
