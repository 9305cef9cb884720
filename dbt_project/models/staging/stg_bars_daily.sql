select
    symbol,
    session_date,
    security_id,
    exchange,
    currency,
    open, high, low, close, volume,
    split_factor, dividend_factor, adj_factor,
    adj_open, adj_high, adj_low, adj_close, adj_volume
from {{ source('market', 'bars_daily') }}
