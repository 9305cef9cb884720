-- Undo 0014: the fact tables' security_id columns and their indexes (the ids stay in ref.securities
-- and market.bars_daily).
DROP INDEX portfolio.currency_attribution_security_id_idx;
DROP INDEX portfolio.positions_security_id_idx;
DROP INDEX models.predictions_security_id_idx;
DROP INDEX analytics.factor_exposures_security_id_idx;
DROP INDEX analytics.indicators_daily_security_id_idx;
ALTER TABLE portfolio.currency_attribution DROP COLUMN security_id;
ALTER TABLE portfolio.positions DROP COLUMN security_id;
ALTER TABLE models.predictions DROP COLUMN security_id;
ALTER TABLE analytics.factor_exposures DROP COLUMN security_id;
ALTER TABLE analytics.indicators_daily DROP COLUMN security_id;
