-- Every fact table keyed by symbol joins on the stable id too (issue 21; README "Symbol master"):
-- security_id next to symbol (kept for readability) on the analytics, model and portfolio facts
-- keyed by security, indexed (security_id, session_date) for the joins of the marts and of BI.
-- The pipeline writes the id of each row's input bar (the processed bars take it from the symbol
-- master); rows loaded before this migration get the same lookup here: ref.securities has one row
-- per symbol, a former ticker keeping its own row with the security's one id.
-- Not here: portfolio.transactions (keyed by portfolio and transaction: the portfolio's own input,
-- joined to ref.securities on symbol), the portfolio-level tables (keyed by portfolio), and
-- market.corporate_actions / market.adjustment_factors (written by the bars and reference assets).
ALTER TABLE analytics.indicators_daily ADD COLUMN security_id text;
ALTER TABLE analytics.factor_exposures ADD COLUMN security_id text;
ALTER TABLE models.predictions ADD COLUMN security_id text;
ALTER TABLE portfolio.positions ADD COLUMN security_id text;
ALTER TABLE portfolio.currency_attribution ADD COLUMN security_id text;

UPDATE analytics.indicators_daily AS f SET security_id = s.security_id
    FROM ref.securities AS s WHERE s.symbol = f.symbol;
UPDATE analytics.factor_exposures AS f SET security_id = s.security_id
    FROM ref.securities AS s WHERE s.symbol = f.symbol;
UPDATE models.predictions AS f SET security_id = s.security_id
    FROM ref.securities AS s WHERE s.symbol = f.symbol;
UPDATE portfolio.positions AS f SET security_id = s.security_id
    FROM ref.securities AS s WHERE s.symbol = f.symbol;
UPDATE portfolio.currency_attribution AS f SET security_id = s.security_id
    FROM ref.securities AS s WHERE s.symbol = f.symbol;

CREATE INDEX indicators_daily_security_id_idx ON analytics.indicators_daily (security_id, session_date);
CREATE INDEX factor_exposures_security_id_idx ON analytics.factor_exposures (security_id, session_date);
CREATE INDEX predictions_security_id_idx ON models.predictions (security_id, session_date);
CREATE INDEX positions_security_id_idx ON portfolio.positions (security_id, session_date);
CREATE INDEX currency_attribution_security_id_idx ON portfolio.currency_attribution (security_id, session_date);

COMMENT ON COLUMN analytics.indicators_daily.security_id IS
    'Stable security id of the bar (ref.securities.security_id): one id across ticker changes';
COMMENT ON COLUMN analytics.factor_exposures.security_id IS
    'Stable security id of the bar (ref.securities.security_id): one id across ticker changes';
COMMENT ON COLUMN models.predictions.security_id IS
    'Stable security id of the scored bar (ref.securities.security_id): one id across ticker changes';
COMMENT ON COLUMN portfolio.positions.security_id IS
    'Stable security id of the holding''s symbol (ref.securities.security_id)';
COMMENT ON COLUMN portfolio.currency_attribution.security_id IS
    'Stable security id of the position''s symbol (ref.securities.security_id); NULL on the portfolio total (symbol = __portfolio__)';
