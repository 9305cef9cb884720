-- The stable id on the last security-keyed market facts (issue 21; README "Symbol master"):
-- market.corporate_actions and market.adjustment_factors carry security_id next to symbol (kept for
-- readability), indexed (security_id, ex_date). The pipeline writes the id the symbol master gives
-- each row's symbol (the processed corporate actions and the bars' factor rows); rows loaded before
-- this migration get the id of the symbol's dated record in ref.securities_history covering the
-- ex-date, else ref.securities' row of the symbol (one row per symbol, a former ticker keeping its
-- own row with the security's one id). Every version of a factor row is backfilled, superseded ones too.
-- The adjusted-on-read views and the as-of function over bars and indicators gain the column too.
-- Not here: the weekly/monthly rollups (continuous aggregates on TimescaleDB, materialized views on
-- PostgreSQL) stay grouped by symbol: a new grouping column means dropping and re-materializing them
-- over the whole history (and the *_adjusted views on them); join them to ref.securities on symbol.
ALTER TABLE market.corporate_actions ADD COLUMN security_id text;
ALTER TABLE market.adjustment_factors ADD COLUMN security_id text;

UPDATE market.corporate_actions AS f SET security_id = coalesce(
    (SELECT h.security_id FROM ref.securities_history AS h
     WHERE h.symbol = f.symbol AND h.valid_from <= f.ex_date AND (h.valid_to IS NULL OR f.ex_date < h.valid_to)
     ORDER BY h.valid_from DESC LIMIT 1),
    (SELECT s.security_id FROM ref.securities AS s WHERE s.symbol = f.symbol));
UPDATE market.adjustment_factors AS f SET security_id = coalesce(
    (SELECT h.security_id FROM ref.securities_history AS h
     WHERE h.symbol = f.symbol AND h.valid_from <= f.ex_date AND (h.valid_to IS NULL OR f.ex_date < h.valid_to)
     ORDER BY h.valid_from DESC LIMIT 1),
    (SELECT s.security_id FROM ref.securities AS s WHERE s.symbol = f.symbol));

CREATE INDEX corporate_actions_security_id_idx ON market.corporate_actions (security_id, ex_date);
CREATE INDEX adjustment_factors_security_id_idx ON market.adjustment_factors (security_id, ex_date);

COMMENT ON COLUMN market.corporate_actions.security_id IS
    'Stable security id of the action''s symbol on its ex-date (ref.securities.security_id): one id across ticker changes';
COMMENT ON COLUMN market.adjustment_factors.security_id IS
    'Stable security id of the factor row''s symbol on its ex-date (ref.securities.security_id): one id across ticker changes';

-- The adjusted views of bars and indicators expose the id (appended: the existing columns are unchanged;
-- market.latest_adjustment stays one row per symbol).
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

-- The as-of function's result type gains the column: dropped and created again (grants with it).
DROP FUNCTION market.bars_adjusted_as_of(timestamptz);
CREATE FUNCTION market.bars_adjusted_as_of(knowledge_time timestamptz)
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
COMMENT ON FUNCTION market.bars_adjusted_as_of(timestamptz) IS
    'Daily bars with prices adjusted as of the corporate actions known at knowledge_time (backward: the latest session as traded)';
GRANT EXECUTE ON FUNCTION market.bars_adjusted_as_of(timestamptz) TO wealth_bi, wealth_loader;
