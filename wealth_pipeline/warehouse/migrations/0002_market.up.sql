-- Reference and market data, time-series tables (hypertables with TimescaleDB) and OHLCV rollups.

CREATE TABLE ref.securities (
    symbol        text PRIMARY KEY,
    name          text,
    exchange      text,
    currency      text,
    asset_class   text,
    sector        text,
    is_synthetic  boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ref.securities IS 'Securities master, one row per symbol';

-- Daily bars. Raw OHLCV as delivered, the cumulative adjustment factors, and split- and
-- dividend-adjusted prices (adj_* = raw * adj_factor; adj_volume = volume / split_factor).
CREATE TABLE market.bars_daily (
    symbol           text NOT NULL,
    session_date     date NOT NULL,
    exchange         text,
    currency         text NOT NULL,
    open             double precision NOT NULL,
    high             double precision NOT NULL,
    low              double precision NOT NULL,
    close            double precision NOT NULL,
    volume           bigint,
    split_factor     double precision NOT NULL DEFAULT 1,
    dividend_factor  double precision NOT NULL DEFAULT 1,
    adj_factor       double precision NOT NULL DEFAULT 1,
    adj_open         double precision,
    adj_high         double precision,
    adj_low          double precision,
    adj_close        double precision,
    adj_volume       double precision,
    source           text,
    PRIMARY KEY (symbol, session_date)
);
CREATE INDEX bars_daily_session_date_idx ON market.bars_daily (session_date);
COMMENT ON TABLE market.bars_daily IS 'Daily OHLCV bars per symbol and trading session, raw and adjusted';

CREATE TABLE market.corporate_actions (
    symbol       text NOT NULL,
    ex_date      date NOT NULL,
    action_type  text NOT NULL,
    ratio        double precision,
    amount       double precision,
    currency     text,
    PRIMARY KEY (symbol, ex_date, action_type)
);
COMMENT ON TABLE market.corporate_actions IS 'Splits (ratio = new shares per old share) and cash dividends (amount per share)';

CREATE TABLE market.fx_rates (
    base_currency   text NOT NULL,
    quote_currency  text NOT NULL,
    session_date    date NOT NULL,
    rate            double precision NOT NULL,
    PRIMARY KEY (base_currency, quote_currency, session_date)
);
COMMENT ON TABLE market.fx_rates IS 'rate = units of quote_currency for one unit of base_currency';

CREATE TABLE market.factor_returns (
    factor        text NOT NULL,
    session_date  date NOT NULL,
    value         double precision NOT NULL,
    PRIMARY KEY (factor, session_date)
);
COMMENT ON TABLE market.factor_returns IS 'Daily factor returns, long format (market, size, value, momentum, rf)';

CREATE TABLE market.benchmark_returns (
    benchmark     text NOT NULL,
    session_date  date NOT NULL,
    level         double precision,
    "return"      double precision,
    PRIMARY KEY (benchmark, session_date)
);
COMMENT ON TABLE market.benchmark_returns IS 'Benchmark levels and simple daily returns';

-- Hypertables where TimescaleDB is installed (1-year chunks, compression after 2 years).
SELECT ops.enable_timeseries('market.bars_daily', 'session_date', ARRAY['symbol']::name[]);
SELECT ops.enable_timeseries('market.corporate_actions', 'ex_date', ARRAY['symbol']::name[]);
SELECT ops.enable_timeseries('market.fx_rates', 'session_date', ARRAY['base_currency', 'quote_currency']::name[]);
SELECT ops.enable_timeseries('market.factor_returns', 'session_date', ARRAY['factor']::name[]);
SELECT ops.enable_timeseries('market.benchmark_returns', 'session_date', ARRAY['benchmark']::name[]);

-- Rollups registered for ops.refresh_rollup / timescale.refresh_rollups. bucket: week or month.
CREATE TABLE ops.rollups (
    view_name  text PRIMARY KEY,
    bucket     text NOT NULL CHECK (bucket IN ('week', 'month'))
);

-- Weekly (weeks start on Monday) and monthly OHLCV rollups of bars_daily, raw and adjusted.
-- Raw open/close span splits within a bucket unadjusted; use adj_* for analysis.
-- TimescaleDB: continuous aggregates with real-time aggregation and refresh policies.
-- PostgreSQL: materialized views with a unique index (REFRESH ... CONCURRENTLY).
DO $migration$
DECLARE
    unit text;
    view_name text;
    bucket_expr text;
    first_of text;
    last_of text;
    body text;
BEGIN
    FOREACH unit IN ARRAY ARRAY['week', 'month'] LOOP
        view_name := CASE unit WHEN 'week' THEN 'bars_weekly' ELSE 'bars_monthly' END;
        IF ops.timescale_enabled() THEN
            bucket_expr := format('time_bucket(interval %L, session_date)', '1 ' || unit);
            first_of := 'first(%1$s, session_date)';
            last_of := 'last(%1$s, session_date)';
        ELSE
            bucket_expr := format('date_trunc(%L, session_date)::date', unit);
            first_of := '(array_agg(%1$s ORDER BY session_date))[1]';
            last_of := '(array_agg(%1$s ORDER BY session_date DESC))[1]';
        END IF;
        body := format(
            'SELECT symbol, %1$s AS %2$I, '
            '%3$s AS open, max(high) AS high, min(low) AS low, %4$s AS close, sum(volume)::bigint AS volume, '
            '%5$s AS adj_open, max(adj_high) AS adj_high, min(adj_low) AS adj_low, %6$s AS adj_close, '
            'sum(adj_volume) AS adj_volume, count(*) AS sessions, '
            'min(session_date) AS first_session, max(session_date) AS last_session '
            'FROM market.bars_daily GROUP BY symbol, %1$s',
            bucket_expr, unit || '_start',
            format(first_of, 'open'), format(last_of, 'close'),
            format(first_of, 'adj_open'), format(last_of, 'adj_close'));
        IF ops.timescale_enabled() THEN
            EXECUTE format(
                'CREATE MATERIALIZED VIEW market.%I WITH (timescaledb.continuous, '
                'timescaledb.materialized_only = false) AS %s WITH NO DATA', view_name, body);
            EXECUTE format(
                'SELECT add_continuous_aggregate_policy(%L::regclass, start_offset => %L::interval, '
                'end_offset => interval ''1 day'', schedule_interval => interval ''1 hour'')',
                'market.' || view_name, CASE unit WHEN 'week' THEN '2 months' ELSE '6 months' END);
        ELSE
            EXECUTE format('CREATE MATERIALIZED VIEW market.%I AS %s WITH DATA', view_name, body);
            EXECUTE format('CREATE UNIQUE INDEX %I ON market.%I (symbol, %I)',
                           view_name || '_key', view_name, unit || '_start');
        END IF;
        -- A continuous aggregate is a view to COMMENT, a plain rollup a materialized view.
        EXECUTE format('COMMENT ON %s market.%I IS %L',
                       CASE WHEN ops.timescale_enabled() THEN 'VIEW' ELSE 'MATERIALIZED VIEW' END,
                       view_name,
                       CASE unit WHEN 'week' THEN 'Weekly OHLCV per symbol (week_start = Monday), raw and adjusted'
                                 ELSE 'Monthly OHLCV per symbol (month_start = 1st), raw and adjusted' END);
        INSERT INTO ops.rollups (view_name, bucket) VALUES ('market.' || view_name, unit);
    END LOOP;
END
$migration$;
GRANT SELECT ON market.bars_weekly, market.bars_monthly TO wealth_bi, wealth_loader;

-- Refresh one registered plain materialized-view rollup as its owner (callable by the loader).
CREATE FUNCTION ops.refresh_rollup(view_name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
AS $$
DECLARE
    rel regclass;
    kind "char";
    populated boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ops.rollups r WHERE r.view_name = refresh_rollup.view_name) THEN
        RAISE EXCEPTION 'ops.refresh_rollup: % is not a registered rollup (see ops.rollups)', view_name;
    END IF;
    rel := to_regclass(view_name);
    SELECT c.relkind, c.relispopulated INTO kind, populated FROM pg_class c WHERE c.oid = rel;
    IF kind IS DISTINCT FROM 'm' THEN
        RAISE EXCEPTION 'ops.refresh_rollup: % is not a materialized view (continuous aggregates are '
                        'refreshed with refresh_continuous_aggregate)', view_name;
    END IF;
    IF populated AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = rel AND i.indisunique
                             AND i.indpred IS NULL AND i.indexprs IS NULL) THEN
        EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %s', rel);
    ELSE
        EXECUTE format('REFRESH MATERIALIZED VIEW %s', rel);
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION ops.refresh_rollup(text) TO wealth_loader;
