-- Analytics: technical indicators and rolling factor exposures per security and session.

CREATE TABLE analytics.indicators_daily (
    symbol           text NOT NULL,
    session_date     date NOT NULL,
    sma_20           double precision,
    sma_50           double precision,
    sma_200          double precision,
    ema_12           double precision,
    ema_26           double precision,
    rsi_14           double precision,
    bb_upper_20      double precision,
    bb_middle_20     double precision,
    bb_lower_20      double precision,
    macd             double precision,
    macd_signal      double precision,
    macd_hist        double precision,
    atr_14           double precision,
    stoch_k          double precision,
    stoch_d          double precision,
    obv              double precision,
    return_1d        double precision,
    log_return_1d    double precision,
    realized_vol_20  double precision,
    realized_vol_60  double precision,
    PRIMARY KEY (symbol, session_date)
);
CREATE INDEX indicators_daily_session_date_idx ON analytics.indicators_daily (session_date);
COMMENT ON TABLE analytics.indicators_daily IS 'TA-Lib-equal indicators on adjusted prices; null during warm-up';

CREATE TABLE analytics.factor_exposures (
    symbol         text NOT NULL,
    session_date   date NOT NULL,
    alpha          double precision,
    beta_market    double precision,
    beta_size      double precision,
    beta_value     double precision,
    beta_momentum  double precision,
    r_squared      double precision,
    residual_vol   double precision,
    n_obs          bigint NOT NULL,
    PRIMARY KEY (symbol, session_date)
);
CREATE INDEX factor_exposures_session_date_idx ON analytics.factor_exposures (session_date);
COMMENT ON TABLE analytics.factor_exposures IS
    'Rolling 252-session OLS of excess returns on market/size/value/momentum: daily alpha, betas, R2, annualized residual vol';

SELECT ops.enable_timeseries('analytics.indicators_daily', 'session_date', ARRAY['symbol']::name[]);
SELECT ops.enable_timeseries('analytics.factor_exposures', 'session_date', ARRAY['symbol']::name[]);
