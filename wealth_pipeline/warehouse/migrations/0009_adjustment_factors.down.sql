-- Undo 0009: the adjusted-on-read views, the as-of function, the factor table and bars' cum_factor.
DROP VIEW analytics.indicators_adjusted;
DROP VIEW market.bars_monthly_adjusted;
DROP VIEW market.bars_weekly_adjusted;
DROP VIEW market.bars_adjusted;
DROP VIEW market.latest_adjustment;
DROP FUNCTION market.bars_adjusted_as_of(timestamptz);
DROP TABLE market.adjustment_factors;
ALTER TABLE market.bars_daily DROP COLUMN cum_factor;
COMMENT ON COLUMN market.bars_daily.adj_factor IS NULL;
COMMENT ON COLUMN market.bars_daily.split_factor IS NULL;
COMMENT ON COLUMN market.bars_daily.dividend_factor IS NULL;
