select
    symbol, session_date, security_id,
    sma_20, sma_50, sma_200, ema_12, ema_26, rsi_14,
    bb_upper_20, bb_middle_20, bb_lower_20,
    macd, macd_signal, macd_hist, atr_14, stoch_k, stoch_d, obv,
    return_1d, log_return_1d, realized_vol_20, realized_vol_60
from {{ source('analytics', 'indicators_daily') }}
