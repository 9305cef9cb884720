-- Undo 0017: plain PostgreSQL's rollups are materialized views again (0002's definition, refreshed
-- whole), the windowed refresh is dropped and the loader's request refreshes whole views again.
DO $migration$
DECLARE
    unit text;
    view_name text;
BEGIN
    IF ops.timescale_enabled() THEN
        RETURN;
    END IF;
    DROP VIEW market.bars_weekly_adjusted, market.bars_monthly_adjusted;
    FOREACH unit IN ARRAY ARRAY['week', 'month'] LOOP
        view_name := CASE unit WHEN 'week' THEN 'bars_weekly' ELSE 'bars_monthly' END;
        EXECUTE format('DROP TABLE market.%I', view_name);
        EXECUTE format(
            'CREATE MATERIALIZED VIEW market.%1$I AS SELECT symbol, date_trunc(%2$L, session_date)::date AS %3$I, '
            '(array_agg(open ORDER BY session_date))[1] AS open, max(high) AS high, min(low) AS low, '
            '(array_agg(close ORDER BY session_date DESC))[1] AS close, sum(volume)::bigint AS volume, '
            '(array_agg(adj_open ORDER BY session_date))[1] AS adj_open, max(adj_high) AS adj_high, '
            'min(adj_low) AS adj_low, (array_agg(adj_close ORDER BY session_date DESC))[1] AS adj_close, '
            'sum(adj_volume) AS adj_volume, count(*) AS sessions, '
            'min(session_date) AS first_session, max(session_date) AS last_session '
            'FROM market.bars_daily GROUP BY symbol, date_trunc(%2$L, session_date)::date WITH DATA',
            view_name, unit, unit || '_start');
        EXECUTE format('CREATE UNIQUE INDEX %I ON market.%I (symbol, %I)',
                       view_name || '_key', view_name, unit || '_start');
        EXECUTE format('COMMENT ON MATERIALIZED VIEW market.%I IS %L', view_name,
                       CASE unit WHEN 'week' THEN 'Weekly OHLCV per symbol (week_start = Monday), raw and adjusted'
                                 ELSE 'Monthly OHLCV per symbol (month_start = 1st), raw and adjusted' END);
        EXECUTE format('GRANT SELECT ON market.%I TO wealth_bi, wealth_loader', view_name);
    END LOOP;

    CREATE VIEW market.bars_weekly_adjusted AS
        SELECT w.symbol, w.week_start, w.open, w.high, w.low, w.close, w.volume,
               w.adj_open * coalesce(l.cum_factor, 1) AS adj_open,
               w.adj_high * coalesce(l.cum_factor, 1) AS adj_high,
               w.adj_low * coalesce(l.cum_factor, 1) AS adj_low,
               w.adj_close * coalesce(l.cum_factor, 1) AS adj_close,
               w.adj_volume * coalesce(l.cum_volume_factor, 1) AS adj_volume,
               w.sessions, w.first_session, w.last_session
        FROM market.bars_weekly w
        LEFT JOIN market.latest_adjustment l USING (symbol);
    COMMENT ON VIEW market.bars_weekly_adjusted IS 'Weekly OHLCV per symbol (week_start = Monday), raw and adjusted as of the latest known action';
    CREATE VIEW market.bars_monthly_adjusted AS
        SELECT m.symbol, m.month_start, m.open, m.high, m.low, m.close, m.volume,
               m.adj_open * coalesce(l.cum_factor, 1) AS adj_open,
               m.adj_high * coalesce(l.cum_factor, 1) AS adj_high,
               m.adj_low * coalesce(l.cum_factor, 1) AS adj_low,
               m.adj_close * coalesce(l.cum_factor, 1) AS adj_close,
               m.adj_volume * coalesce(l.cum_volume_factor, 1) AS adj_volume,
               m.sessions, m.first_session, m.last_session
        FROM market.bars_monthly m
        LEFT JOIN market.latest_adjustment l USING (symbol);
    COMMENT ON VIEW market.bars_monthly_adjusted IS 'Monthly OHLCV per symbol (month_start = 1st), raw and adjusted as of the latest known action';
    GRANT SELECT ON market.bars_weekly_adjusted, market.bars_monthly_adjusted TO wealth_bi, wealth_loader;
END
$migration$;

CREATE OR REPLACE FUNCTION ops.request_rollup_refresh(window_start date, window_end date) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid bigint;
    ext name;
    job integer;
    view_name text;
    done text[] := '{}';
BEGIN
    IF window_start IS NULL OR window_end IS NULL OR window_end < window_start THEN
        RAISE EXCEPTION 'ops.request_rollup_refresh: window % .. % is empty or NULL (start <= end expected)',
            window_start, window_end;
    END IF;
    INSERT INTO ops.rollup_refreshes (window_start, window_end) VALUES (window_start, window_end)
    RETURNING request_id INTO rid;
    IF NOT ops.timescale_enabled() THEN
        FOR view_name IN SELECT r.view_name FROM ops.rollups r ORDER BY r.view_name LOOP
            PERFORM ops.refresh_rollup(view_name);
            done := done || view_name;
        END LOOP;
        UPDATE ops.rollup_refreshes SET finished_at = clock_timestamp(), refreshed = done WHERE request_id = rid;
        RETURN rid;
    END IF;
    SELECT n.nspname INTO ext FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'timescaledb';
    EXECUTE format('SELECT %I.add_job(%L::regproc, interval %L, config => %L::jsonb, initial_start => now(), '
                   'fixed_schedule => false)', ext, 'ops.run_rollup_refresh', '1 day',
                   jsonb_build_object('request_id', rid))
        INTO job;
    EXECUTE format('SELECT %I.alter_job(%s, max_retries => 2, retry_period => interval %L, max_runtime => interval %L)',
                   ext, job, '2 seconds', '1 hour');
    UPDATE ops.rollup_refreshes SET job_id = job WHERE request_id = rid;
    RETURN rid;
END
$$;

DROP FUNCTION ops.refresh_rollup(text, date, date);

CREATE OR REPLACE FUNCTION ops.refresh_rollup(view_name text) RETURNS void
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
