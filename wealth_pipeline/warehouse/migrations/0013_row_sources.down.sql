-- Undo 0013: the four new columns go (their providers with them; ops.lineage still has the
-- per-session sets) and bars_daily's source holds the former literal 'raw' again.
COMMENT ON COLUMN market.bars_daily.source IS NULL;
UPDATE market.bars_daily SET source = 'raw' WHERE source IS NOT NULL;
ALTER TABLE market.benchmark_returns DROP COLUMN source;
ALTER TABLE market.factor_returns DROP COLUMN source;
ALTER TABLE market.fx_rates DROP COLUMN source;
ALTER TABLE market.corporate_actions DROP COLUMN source;
