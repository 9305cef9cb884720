-- Undo 0005. On TimescaleDB the rolling volatility is a continuous aggregate (DROP MATERIALIZED
-- VIEW also drops its materialization hypertable); without it, a plain view. The catalog query is
-- dynamic so that it is only planned where TimescaleDB is installed.
DO $migration$
DECLARE
    is_cagg boolean := false;
BEGIN
    IF ops.timescale_enabled() THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates '
                'WHERE view_schema = ''portfolio'' AND view_name = ''rolling_volatility_30d'')' INTO is_cagg;
    END IF;
    IF is_cagg THEN
        -- Remove the refresh job first: a refresh running while the view is dropped fails the drop.
        EXECUTE 'SELECT remove_continuous_aggregate_policy(''portfolio.rolling_volatility_30d''::regclass, if_exists => true)';
        DROP MATERIALIZED VIEW portfolio.rolling_volatility_30d;
    ELSE
        DROP VIEW IF EXISTS portfolio.rolling_volatility_30d;
    END IF;
END
$migration$;
DROP TABLE portfolio.factor_exposures;
DROP TABLE portfolio.currency_attribution;
DROP TABLE portfolio.portfolio_metrics;
DROP TABLE portfolio.valuations;
DROP TABLE portfolio.cash_balances;
DROP TABLE portfolio.positions;
