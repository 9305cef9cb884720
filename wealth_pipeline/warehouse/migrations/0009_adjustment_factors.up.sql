-- The adjustment model (issue 14; ARCHITECTURE.md "Adjustment model"): market.bars_daily keeps raw
-- OHLCV and POINT-IN-TIME factors that depend only on the corporate actions with ex_date <= the
-- session, so a new action never rewrites earlier rows:
--   cum_factor G(t)   = product over the symbol's actions with ex_date <= t of the action's
--                       backward price factor (split: 1/ratio; dividends: 1 - sum(amounts)/prev close)
--   adj_factor        = 1 / G(t); adj_open/high/low/close = raw * adj_factor (total-return basis in
--                       the units of the symbol's first session: ratios are total returns)
--   split_factor      = product of split ratios with ex_date <= t; adj_volume = volume / split_factor
-- Prices adjusted "as of now" (what a chart shows) are computed on read: raw * G(latest) / G(t),
-- from the small per-symbol factor table below (market.bars_adjusted, the rollups' *_adjusted views),
-- and as they were known at a knowledge time by market.bars_adjusted_as_of(timestamptz).
ALTER TABLE market.bars_daily ADD COLUMN cum_factor double precision;
COMMENT ON COLUMN market.bars_daily.cum_factor IS
    'Point-in-time cumulative backward price factor G(t): product of the factors of the symbol''s actions with ex_date <= session_date';
COMMENT ON COLUMN market.bars_daily.adj_factor IS
    'Point-in-time: 1 / cum_factor; adj_* = raw * adj_factor (total-return basis, never restated by later actions)';
COMMENT ON COLUMN market.bars_daily.split_factor IS
    'Point-in-time: product of the split ratios with ex_date <= session_date; adj_volume = volume / split_factor';
COMMENT ON COLUMN market.bars_daily.dividend_factor IS
    'Point-in-time: product over dividends with ex_date <= session_date of 1 / (1 - amount / previous close)';

-- One row per (symbol, ex_date) and version: several actions of a day combine into one factor.
-- Bitemporal: known_at is when the pipeline first published this version, superseded_at when a
-- later one (a corrected amount, a restated close, a retracted action: factor 1) replaced it.
CREATE TABLE market.adjustment_factors (
    symbol             text NOT NULL,
    ex_date            date NOT NULL,
    factor             double precision NOT NULL CHECK (factor > 0),
    volume_factor      double precision NOT NULL CHECK (volume_factor > 0),
    cum_factor         double precision NOT NULL CHECK (cum_factor > 0),
    cum_volume_factor  double precision NOT NULL CHECK (cum_volume_factor > 0),
    known_at           timestamptz NOT NULL DEFAULT now(),
    superseded_at      timestamptz CHECK (superseded_at IS NULL OR superseded_at >= known_at),
    PRIMARY KEY (symbol, ex_date, known_at)
);
CREATE UNIQUE INDEX adjustment_factors_current_key ON market.adjustment_factors (symbol, ex_date)
    WHERE superseded_at IS NULL;
COMMENT ON TABLE market.adjustment_factors IS
    'Per symbol and ex-date: backward price factor (prices before ex_date x factor), volume factor (split ratio), cumulative factors through ex_date; versions with known_at/superseded_at';
COMMENT ON COLUMN market.adjustment_factors.factor IS
    'Backward price factor of the day''s actions: 1/ratio for a split times 1 - sum(dividend amounts)/previous close';
COMMENT ON COLUMN market.adjustment_factors.volume_factor IS 'Split ratio of the day (1 for dividends): earlier volume x this';
COMMENT ON COLUMN market.adjustment_factors.cum_factor IS 'G(ex_date): product of factor over the symbol''s ex-dates <= this one';
COMMENT ON COLUMN market.adjustment_factors.cum_volume_factor IS 'Product of volume_factor over the symbol''s ex-dates <= this one';
COMMENT ON COLUMN market.adjustment_factors.known_at IS 'When this version was first published by the pipeline (knowledge time)';
COMMENT ON COLUMN market.adjustment_factors.superseded_at IS 'When a later version replaced this one; NULL for the current version';
GRANT SELECT ON market.adjustment_factors TO wealth_bi;
GRANT SELECT, INSERT, UPDATE ON market.adjustment_factors TO wealth_loader;

-- Bars adjusted as known at a knowledge time: raw x the product of the factors of the actions with
-- ex_date after the session known then. Bars themselves are the current ones (the warehouse keeps
-- no bar versions; lakehouse reads with as_of time-travel both).
CREATE FUNCTION market.bars_adjusted_as_of(knowledge_time timestamptz)
RETURNS TABLE (
    symbol text, session_date date, exchange text, currency text,
    open double precision, high double precision, low double precision, close double precision, volume bigint,
    price_factor double precision, volume_factor double precision,
    adj_open double precision, adj_high double precision, adj_low double precision,
    adj_close double precision, adj_volume double precision, source text
)
LANGUAGE sql STABLE
AS $$
    SELECT b.symbol, b.session_date, b.exchange, b.currency, b.open, b.high, b.low, b.close, b.volume,
           r.price_factor, r.volume_factor,
           b.open * r.price_factor, b.high * r.price_factor, b.low * r.price_factor,
           b.close * r.price_factor, b.volume * r.volume_factor, b.source
    FROM market.bars_daily b
    CROSS JOIN LATERAL (
        SELECT coalesce(exp(sum(ln(a.factor))), 1) AS price_factor,
               coalesce(exp(sum(ln(a.volume_factor))), 1) AS volume_factor
        FROM market.adjustment_factors a
        WHERE a.symbol = b.symbol AND a.ex_date > b.session_date
          AND a.known_at <= knowledge_time
          AND (a.superseded_at IS NULL OR a.superseded_at > knowledge_time)
    ) r
$$;
COMMENT ON FUNCTION market.bars_adjusted_as_of(timestamptz) IS
    'Daily bars with prices adjusted as of the corporate actions known at knowledge_time (backward: the latest session as traded)';
GRANT EXECUTE ON FUNCTION market.bars_adjusted_as_of(timestamptz) TO wealth_bi, wealth_loader;

-- Latest cumulative factors per symbol (current versions): what "adjusted as of now" scales by.
CREATE VIEW market.latest_adjustment AS
    SELECT DISTINCT ON (symbol) symbol, ex_date AS last_ex_date, cum_factor, cum_volume_factor
    FROM market.adjustment_factors
    WHERE superseded_at IS NULL
    ORDER BY symbol, ex_date DESC;
COMMENT ON VIEW market.latest_adjustment IS 'Per symbol: the cumulative factors through its latest ex-date (current versions)';

-- Adjusted as of now: point-in-time total-return basis x the latest cumulative factor, i.e.
-- raw x G(latest) / G(t); the latest session is as traded.
CREATE VIEW market.bars_adjusted AS
    SELECT b.symbol, b.session_date, b.exchange, b.currency, b.open, b.high, b.low, b.close, b.volume,
           b.cum_factor,
           b.adj_open * coalesce(l.cum_factor, 1) AS adj_open,
           b.adj_high * coalesce(l.cum_factor, 1) AS adj_high,
           b.adj_low * coalesce(l.cum_factor, 1) AS adj_low,
           b.adj_close * coalesce(l.cum_factor, 1) AS adj_close,
           b.adj_volume * coalesce(l.cum_volume_factor, 1) AS adj_volume,
           b.source
    FROM market.bars_daily b
    LEFT JOIN market.latest_adjustment l USING (symbol);
COMMENT ON VIEW market.bars_adjusted IS
    'Daily bars: raw OHLCV and split/dividend-adjusted as of the latest known corporate action (raw x G(latest) / G(t))';

-- The rollups aggregate the point-in-time adj_* columns (never restated by a later action; max,
-- min, first and last commute with a positive scale): these views put them on the as-of-now basis.
CREATE VIEW market.bars_weekly_adjusted AS
    SELECT w.symbol, w.week_start, w.open, w.high, w.low, w.close, w.volume,
           w.adj_open * coalesce(l.cum_factor, 1) AS adj_open,
           w.adj_high * coalesce(l.cum_factor, 1) AS adj_high,
           w.adj_low * coalesce(l.cum_factor, 1) AS adj_low,
           w.adj_close * coalesce(l.cum_factor, 1) AS adj_close,
           w.adj_volume * coalesce(l.cum_volume_factor, 1) AS adj_volume,
           w.sessions, w.first_session, w.last_session
    FROM market.bars_weekly w
    LEFT JOIN market.latest_adjustment l USING (symbol);
COMMENT ON VIEW market.bars_weekly_adjusted IS 'Weekly OHLCV per symbol (week_start = Monday), raw and adjusted as of the latest known action';
CREATE VIEW market.bars_monthly_adjusted AS
    SELECT m.symbol, m.month_start, m.open, m.high, m.low, m.close, m.volume,
           m.adj_open * coalesce(l.cum_factor, 1) AS adj_open,
           m.adj_high * coalesce(l.cum_factor, 1) AS adj_high,
           m.adj_low * coalesce(l.cum_factor, 1) AS adj_low,
           m.adj_close * coalesce(l.cum_factor, 1) AS adj_close,
           m.adj_volume * coalesce(l.cum_volume_factor, 1) AS adj_volume,
           m.sessions, m.first_session, m.last_session
    FROM market.bars_monthly m
    LEFT JOIN market.latest_adjustment l USING (symbol);
COMMENT ON VIEW market.bars_monthly_adjusted IS 'Monthly OHLCV per symbol (month_start = 1st), raw and adjusted as of the latest known action';
GRANT SELECT ON market.latest_adjustment, market.bars_adjusted, market.bars_weekly_adjusted,
    market.bars_monthly_adjusted TO wealth_bi, wealth_loader;

-- Indicators: level indicators (SMA, EMA, Bollinger, MACD, ATR) are stored on the session's own
-- price basis (point-in-time, never restated); this view puts them on the as-of-now basis
-- (x G(latest) / G(t)). RSI, stochastic, returns and volatility are scale-invariant: unchanged.
CREATE VIEW analytics.indicators_adjusted AS
    SELECT i.symbol, i.session_date,
           i.sma_20 * r.ratio AS sma_20,
           i.sma_50 * r.ratio AS sma_50,
           i.sma_200 * r.ratio AS sma_200,
           i.ema_12 * r.ratio AS ema_12,
           i.ema_26 * r.ratio AS ema_26,
           i.bb_upper_20 * r.ratio AS bb_upper_20,
           i.bb_middle_20 * r.ratio AS bb_middle_20,
           i.bb_lower_20 * r.ratio AS bb_lower_20,
           i.macd * r.ratio AS macd,
           i.macd_signal * r.ratio AS macd_signal,
           i.macd_hist * r.ratio AS macd_hist,
           i.atr_14 * r.ratio AS atr_14,
           i.rsi_14,
           i.stoch_k,
           i.stoch_d,
           i.obv,
           i.return_1d,
           i.log_return_1d,
           i.realized_vol_20,
           i.realized_vol_60
    FROM analytics.indicators_daily i
    LEFT JOIN market.bars_daily b USING (symbol, session_date)
    LEFT JOIN market.latest_adjustment l USING (symbol)
    CROSS JOIN LATERAL (SELECT coalesce(l.cum_factor, 1) / coalesce(b.cum_factor, 1) AS ratio) r;
COMMENT ON VIEW analytics.indicators_adjusted IS
    'Indicators with level indicators on the as-of-now price basis (stored ones are on the session''s basis)';
GRANT SELECT ON analytics.indicators_adjusted TO wealth_bi, wealth_loader;
