-- Portfolio analytics: daily positions, cash, valuations, metrics, currency attribution and factor
-- exposures per portfolio, all under the portfolio row-level security of 0003
-- (ops.enable_portfolio_rls): a BI login reads only the rows of the portfolios it owns.
-- With TimescaleDB the tables are hypertables (no compression policy: portfolio tables are small
-- and rewritten by window) and portfolio.rolling_volatility_30d is a continuous aggregate;
-- without it, plain tables and a view of the same name and columns.

CREATE TABLE portfolio.positions (
    portfolio_id         text NOT NULL,
    session_date         date NOT NULL,
    symbol               text NOT NULL,
    currency             text NOT NULL,
    quantity             double precision NOT NULL,
    cost_basis_local     double precision,
    cost_basis_base      double precision,
    market_value_local   double precision,
    market_value_base    double precision,
    unrealized_pnl_base  double precision,
    realized_pnl_base    double precision,
    weight               double precision,
    PRIMARY KEY (portfolio_id, symbol, session_date)
);
CREATE INDEX positions_session_date_idx ON portfolio.positions (session_date);
COMMENT ON TABLE portfolio.positions IS
    'Holdings per portfolio, symbol and valuation day (FIFO lots): quantity, cost basis, market value in local and base currency, P&L, weight of total value';

CREATE TABLE portfolio.cash_balances (
    portfolio_id  text NOT NULL,
    session_date  date NOT NULL,
    currency      text NOT NULL,
    balance       double precision NOT NULL,
    balance_base  double precision,
    PRIMARY KEY (portfolio_id, currency, session_date)
);
CREATE INDEX cash_balances_session_date_idx ON portfolio.cash_balances (session_date);
COMMENT ON TABLE portfolio.cash_balances IS 'Cash per portfolio, currency and valuation day, in the currency and in base currency';

CREATE TABLE portfolio.valuations (
    portfolio_id            text NOT NULL,
    session_date            date NOT NULL,
    base_currency           text NOT NULL,
    positions_value_base    double precision,
    cash_base               double precision,
    total_value_base        double precision,
    net_external_flow_base  double precision,
    PRIMARY KEY (portfolio_id, session_date)
);
CREATE INDEX valuations_session_date_idx ON portfolio.valuations (session_date);
COMMENT ON TABLE portfolio.valuations IS 'Total value per portfolio and valuation day in base currency; net deposits minus withdrawals of the day';

CREATE TABLE portfolio.portfolio_metrics (
    portfolio_id         text NOT NULL,
    session_date         date NOT NULL,
    daily_twr            double precision,
    cumulative_twr       double precision,
    mwr_since_inception  double precision,
    volatility_30        double precision,
    volatility_90        double precision,
    volatility_252       double precision,
    sharpe_252           double precision,
    max_drawdown         double precision,
    beta_252             double precision,
    PRIMARY KEY (portfolio_id, session_date)
);
CREATE INDEX portfolio_metrics_session_date_idx ON portfolio.portfolio_metrics (session_date);
COMMENT ON TABLE portfolio.portfolio_metrics IS
    'Time-weighted and money-weighted (XIRR) returns, annualized volatility 30/90/252, Sharpe 252, max drawdown, beta 252 to the benchmark';

CREATE TABLE portfolio.currency_attribution (
    portfolio_id  text NOT NULL,
    session_date  date NOT NULL,
    symbol        text NOT NULL,
    local_return  double precision,
    fx_return     double precision,
    interaction   double precision,
    base_return   double precision,
    PRIMARY KEY (portfolio_id, symbol, session_date)
);
CREATE INDEX currency_attribution_session_date_idx ON portfolio.currency_attribution (session_date);
COMMENT ON TABLE portfolio.currency_attribution IS
    'Daily base-currency return split into local, FX and interaction terms per position and for the portfolio (symbol = __portfolio__)';

CREATE TABLE portfolio.factor_exposures (
    portfolio_id   text NOT NULL,
    session_date   date NOT NULL,
    alpha          double precision,
    beta_market    double precision,
    beta_size      double precision,
    beta_value     double precision,
    beta_momentum  double precision,
    coverage       double precision,
    PRIMARY KEY (portfolio_id, session_date)
);
CREATE INDEX portfolio_factor_exposures_session_date_idx ON portfolio.factor_exposures (session_date);
COMMENT ON TABLE portfolio.factor_exposures IS
    'Value-weighted factor exposures of the invested holdings; coverage = share of invested value with estimates';

SELECT ops.enable_timeseries('portfolio.positions', 'session_date', ARRAY['portfolio_id', 'symbol']::name[], compress_after => NULL);
SELECT ops.enable_timeseries('portfolio.cash_balances', 'session_date', ARRAY['portfolio_id', 'currency']::name[], compress_after => NULL);
SELECT ops.enable_timeseries('portfolio.valuations', 'session_date', ARRAY['portfolio_id']::name[], compress_after => NULL);
SELECT ops.enable_timeseries('portfolio.portfolio_metrics', 'session_date', ARRAY['portfolio_id']::name[], compress_after => NULL);
SELECT ops.enable_timeseries('portfolio.currency_attribution', 'session_date', ARRAY['portfolio_id', 'symbol']::name[], compress_after => NULL);
SELECT ops.enable_timeseries('portfolio.factor_exposures', 'session_date', ARRAY['portfolio_id']::name[], compress_after => NULL);

-- Rolling 30-session volatility per portfolio and day. TimescaleDB: a real-time continuous
-- aggregate of portfolio_metrics (not readable by BI logins, see below). Plain PostgreSQL: a
-- security_invoker view over portfolio_metrics under the portfolio row-level security.
DO $migration$
BEGIN
    IF ops.timescale_enabled() THEN
        CREATE MATERIALIZED VIEW portfolio.rolling_volatility_30d
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT portfolio_id, time_bucket(interval '1 day', session_date) AS session_date,
                   max(volatility_30) AS volatility_30
            FROM portfolio.portfolio_metrics
            GROUP BY portfolio_id, time_bucket(interval '1 day', session_date)
            WITH NO DATA;
        PERFORM add_continuous_aggregate_policy('portfolio.rolling_volatility_30d'::regclass,
            start_offset => interval '30 days', end_offset => interval '1 day', schedule_interval => interval '1 hour',
            -- first run an hour from now, not while the migration (or a quick downgrade) still runs;
            -- real-time aggregation serves the rows not yet materialized meanwhile
            initial_start => now() + interval '1 hour');
        -- TimescaleDB cannot put row-level security on the materialization table (and refuses a
        -- continuous aggregate over a table that already has it), so this aggregate would show
        -- every portfolio: it is for the pipeline roles only; BI logins read volatility_30 from
        -- portfolio.portfolio_metrics (row-level-secured) or the marts.
        REVOKE ALL ON portfolio.rolling_volatility_30d FROM PUBLIC, wealth_bi;
        GRANT SELECT ON portfolio.rolling_volatility_30d TO wealth_loader;
        COMMENT ON VIEW portfolio.rolling_volatility_30d IS
            'Rolling 30-session annualized volatility per portfolio and day (continuous aggregate of portfolio_metrics)';
    ELSE
        CREATE VIEW portfolio.rolling_volatility_30d AS
            SELECT portfolio_id, session_date, volatility_30 FROM portfolio.portfolio_metrics;
        PERFORM ops.enable_portfolio_rls('portfolio.rolling_volatility_30d');
        COMMENT ON VIEW portfolio.rolling_volatility_30d IS
            'Rolling 30-session annualized volatility per portfolio and day (view of portfolio_metrics)';
    END IF;
END
$migration$;

-- After the continuous aggregate: TimescaleDB refuses to create one over a table that already has
-- row security (refreshes run as wealth_owner, who passes the pipeline_all policy).
SELECT ops.enable_portfolio_rls('portfolio.positions');
SELECT ops.enable_portfolio_rls('portfolio.cash_balances');
SELECT ops.enable_portfolio_rls('portfolio.valuations');
SELECT ops.enable_portfolio_rls('portfolio.portfolio_metrics');
SELECT ops.enable_portfolio_rls('portfolio.currency_attribution');
SELECT ops.enable_portfolio_rls('portfolio.factor_exposures');

