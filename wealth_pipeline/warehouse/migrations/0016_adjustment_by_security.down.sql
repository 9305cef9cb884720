-- Undo 0016: the adjusted views, market.latest_adjustment and the as-of function keyed by symbol
-- again (as 0015 left them; same columns, so replaced in place), then the per-security view.
CREATE OR REPLACE VIEW market.bars_adjusted AS
    SELECT b.symbol, b.session_date, b.exchange, b.currency, b.open, b.high, b.low, b.close, b.volume,
           b.cum_factor,
           b.adj_open * coalesce(l.cum_factor, 1) AS adj_open,
           b.adj_high * coalesce(l.cum_factor, 1) AS adj_high,
           b.adj_low * coalesce(l.cum_factor, 1) AS adj_low,
           b.adj_close * coalesce(l.cum_factor, 1) AS adj_close,
           b.adj_volume * coalesce(l.cum_volume_factor, 1) AS adj_volume,
           b.source,
           b.security_id
    FROM market.bars_daily b
    LEFT JOIN market.latest_adjustment l USING (symbol);
CREATE OR REPLACE VIEW analytics.indicators_adjusted AS
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
           i.realized_vol_60,
           i.security_id
    FROM analytics.indicators_daily i
    LEFT JOIN market.bars_daily b USING (symbol, session_date)
    LEFT JOIN market.latest_adjustment l USING (symbol)
    CROSS JOIN LATERAL (SELECT coalesce(l.cum_factor, 1) / coalesce(b.cum_factor, 1) AS ratio) r;

CREATE OR REPLACE VIEW market.latest_adjustment AS
    SELECT DISTINCT ON (symbol) symbol, ex_date AS last_ex_date, cum_factor, cum_volume_factor
    FROM market.adjustment_factors
    WHERE superseded_at IS NULL
    ORDER BY symbol, ex_date DESC;
COMMENT ON VIEW market.latest_adjustment IS 'Per symbol: the cumulative factors through its latest ex-date (current versions)';

DROP VIEW market.latest_security_adjustment;

CREATE OR REPLACE FUNCTION market.bars_adjusted_as_of(knowledge_time timestamptz)
RETURNS TABLE (
    symbol text, session_date date, exchange text, currency text,
    open double precision, high double precision, low double precision, close double precision, volume bigint,
    price_factor double precision, volume_factor double precision,
    adj_open double precision, adj_high double precision, adj_low double precision,
    adj_close double precision, adj_volume double precision, source text, security_id text
)
LANGUAGE sql STABLE
AS $$
    SELECT b.symbol, b.session_date, b.exchange, b.currency, b.open, b.high, b.low, b.close, b.volume,
           r.price_factor, r.volume_factor,
           b.open * r.price_factor, b.high * r.price_factor, b.low * r.price_factor,
           b.close * r.price_factor, b.volume * r.volume_factor, b.source, b.security_id
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
