-- Undo 0002 (continuous aggregates and plain materialized views are both dropped as materialized views).
DROP FUNCTION ops.refresh_rollup(text);
DROP MATERIALIZED VIEW market.bars_monthly;
DROP MATERIALIZED VIEW market.bars_weekly;
DROP TABLE ops.rollups;
DROP TABLE market.benchmark_returns;
DROP TABLE market.factor_returns;
DROP TABLE market.fx_rates;
DROP TABLE market.corporate_actions;
DROP TABLE market.bars_daily;
DROP TABLE ref.securities;
