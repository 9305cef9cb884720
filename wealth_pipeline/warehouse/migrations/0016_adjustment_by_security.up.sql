-- One continuous adjustment chain per security across a ticker change (issue 21 item 3; README
-- "Symbol master"). The pipeline now chains factor rows by security_id (core/adjustments.py): the
-- first cum_factor under a new ticker continues from the former ticker's last one. The as-of-now
-- "latest factor" follows: it is the latest current factor row of the bar's security, so a split
-- under META also scales FB's earlier prices. A row without an id (a symbol the master does not
-- know) keeps its own per-symbol chain: the key is coalesce(security_id, 'symbol:' || symbol).
CREATE VIEW market.latest_security_adjustment AS
    SELECT DISTINCT ON (coalesce(security_id, 'symbol:' || symbol))
           coalesce(security_id, 'symbol:' || symbol) AS adjustment_key,
           security_id, symbol, ex_date AS last_ex_date, cum_factor, cum_volume_factor
    FROM market.adjustment_factors
    WHERE superseded_at IS NULL
    ORDER BY coalesce(security_id, 'symbol:' || symbol), ex_date DESC, symbol;
COMMENT ON VIEW market.latest_security_adjustment IS
    'Per security (per symbol for rows without a security_id): the cumulative factors through its latest ex-date under any of its tickers (current versions)';
GRANT SELECT ON market.latest_security_adjustment TO wealth_bi, wealth_loader;

-- Still one row per symbol (the weekly/monthly *_adjusted views join it on symbol): every symbol of
-- a security (its factor rows' symbols and its ref.securities rows, a former ticker included) gets
-- the security's latest cumulative factors.
CREATE OR REPLACE VIEW market.latest_adjustment AS
    SELECT DISTINCT ON (k.symbol) k.symbol, l.last_ex_date, l.cum_factor, l.cum_volume_factor
    FROM (SELECT symbol, coalesce(security_id, 'symbol:' || symbol) AS adjustment_key
          FROM market.adjustment_factors WHERE superseded_at IS NULL
          UNION
          SELECT symbol, security_id FROM ref.securities WHERE security_id IS NOT NULL) k
    JOIN market.latest_security_adjustment l USING (adjustment_key)
    ORDER BY k.symbol, l.last_ex_date DESC;
COMMENT ON VIEW market.latest_adjustment IS
    'Per symbol: the cumulative factors through the latest ex-date of its security (any ticker; current versions)';

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
    LEFT JOIN market.latest_security_adjustment l
        ON l.adjustment_key = coalesce(b.security_id, 'symbol:' || b.symbol);
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
    LEFT JOIN market.latest_security_adjustment l
        ON l.adjustment_key = coalesce(b.security_id, i.security_id, 'symbol:' || i.symbol)
    CROSS JOIN LATERAL (SELECT coalesce(l.cum_factor, 1) / coalesce(b.cum_factor, 1) AS ratio) r;

-- The as-of product runs over the factor rows of the bar's security (any ticker); same signature.
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
        WHERE (a.security_id = b.security_id
               OR (b.security_id IS NULL AND a.security_id IS NULL AND a.symbol = b.symbol))
          AND a.ex_date > b.session_date
          AND a.known_at <= knowledge_time
          AND (a.superseded_at IS NULL OR a.superseded_at > knowledge_time)
    ) r
$$;
