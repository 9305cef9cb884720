-- Plain PostgreSQL's weekly and monthly rollups become tables refreshed per window (issue 14, "daily
-- cost stays daily"). Until now they were materialized views, and REFRESH MATERIALIZED VIEW
-- CONCURRENTLY recomputed both over every bar at every load: with 1.3M bars (500 securities x 10
-- years), the daily session's largest cost outside dbt. Now ops.refresh_rollup(view, start, end)
-- deletes and inserts only the whole buckets (weeks from Monday, months from the 1st) that
-- cover the loaded window, as TimescaleDB's refresh_continuous_aggregate already did. A
-- continuous aggregate is left as it is: on TimescaleDB this migration changes no relation.
-- Same columns as before, so market.bars_*_adjusted (0009) are recreated unchanged.

-- Recompute the buckets of a registered rollup covering sessions in [window_start, window_end].
-- Refreshes of one rollup are serialized by an advisory lock (two runs of a chunked backfill can
-- share a bucket at their boundary); each statement after it sees every committed bar.
CREATE FUNCTION ops.refresh_rollup(view_name text, window_start date, window_end date) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
AS $$
DECLARE
    rel regclass;
    kind "char";
    unit text;
    lo date;
    hi date;
BEGIN
    SELECT r.bucket INTO unit FROM ops.rollups r WHERE r.view_name = refresh_rollup.view_name;
    IF unit IS NULL THEN
        RAISE EXCEPTION 'ops.refresh_rollup: % is not a registered rollup (see ops.rollups)', view_name;
    END IF;
    IF window_start IS NULL OR window_end IS NULL OR window_end < window_start THEN
        RAISE EXCEPTION 'ops.refresh_rollup: window % .. % is empty or NULL (start <= end expected)',
            window_start, window_end;
    END IF;
    rel := to_regclass(view_name);
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = rel;
    IF kind = 'm' THEN
        PERFORM ops.refresh_rollup(view_name);
        RETURN;
    ELSIF kind IS DISTINCT FROM 'r' THEN
        RAISE EXCEPTION 'ops.refresh_rollup: % is not a rollup table (continuous aggregates are '
                        'refreshed with refresh_continuous_aggregate)', view_name;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ops.refresh_rollup:' || view_name));
    lo := date_trunc(unit, window_start)::date;
    hi := (date_trunc(unit, window_end) + ('1 ' || unit)::interval)::date;
    EXECUTE format('DELETE FROM %s WHERE %I >= $1 AND %I < $2', rel, unit || '_start', unit || '_start')
        USING lo, hi;
    EXECUTE format(
        'INSERT INTO %1$s (symbol, %2$I, open, high, low, close, volume, adj_open, adj_high, adj_low, '
        'adj_close, adj_volume, sessions, first_session, last_session) '
        'SELECT symbol, date_trunc(%3$L, session_date)::date, '
        '(array_agg(open ORDER BY session_date))[1], max(high), min(low), '
        '(array_agg(close ORDER BY session_date DESC))[1], sum(volume)::bigint, '
        '(array_agg(adj_open ORDER BY session_date))[1], max(adj_high), min(adj_low), '
        '(array_agg(adj_close ORDER BY session_date DESC))[1], sum(adj_volume), count(*), '
        'min(session_date), max(session_date) '
        'FROM market.bars_daily WHERE session_date >= $1 AND session_date < $2 GROUP BY 1, 2',
        rel, unit || '_start', unit)
        USING lo, hi;
END
$$;
REVOKE ALL ON FUNCTION ops.refresh_rollup(text, date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.refresh_rollup(text, date, date) TO wealth_loader;
COMMENT ON FUNCTION ops.refresh_rollup(text, date, date) IS
    'Recompute the whole buckets of a registered rollup table covering [window_start, window_end] (a materialized view: whole refresh)';

-- The whole-rollup refresh of 0002 (still what `ops.refresh_rollup(view)` means) on a table:
-- every bucket from the first bar to the last.
CREATE OR REPLACE FUNCTION ops.refresh_rollup(view_name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
AS $$
DECLARE
    rel regclass;
    kind "char";
    populated boolean;
    first_day date;
    last_day date;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ops.rollups r WHERE r.view_name = refresh_rollup.view_name) THEN
        RAISE EXCEPTION 'ops.refresh_rollup: % is not a registered rollup (see ops.rollups)', view_name;
    END IF;
    rel := to_regclass(view_name);
    SELECT c.relkind, c.relispopulated INTO kind, populated FROM pg_class c WHERE c.oid = rel;
    IF kind = 'r' THEN
        SELECT min(session_date), max(session_date) INTO first_day, last_day FROM market.bars_daily;
        IF first_day IS NULL THEN
            EXECUTE format('DELETE FROM %s', rel);
        ELSE
            PERFORM ops.refresh_rollup(view_name, first_day, last_day);
        END IF;
        RETURN;
    END IF;
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

-- The loader's request (0008) refreshes only the window's buckets on plain PostgreSQL too.
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
            PERFORM ops.refresh_rollup(view_name, window_start, window_end);
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
        EXECUTE format('CREATE TABLE market.%I AS TABLE market.%I', view_name || '_table', view_name);
        EXECUTE format('DROP MATERIALIZED VIEW market.%I', view_name);
        EXECUTE format('ALTER TABLE market.%I RENAME TO %I', view_name || '_table', view_name);
        EXECUTE format('ALTER TABLE market.%I ADD CONSTRAINT %I PRIMARY KEY (symbol, %I)',
                       view_name, view_name || '_key', unit || '_start');
        EXECUTE format('CREATE INDEX %I ON market.%I (%I)', view_name || '_bucket', view_name, unit || '_start');
        EXECUTE format('COMMENT ON TABLE market.%I IS %L', view_name,
                       CASE unit WHEN 'week' THEN 'Weekly OHLCV per symbol (week_start = Monday), raw and adjusted; refreshed per loaded window (ops.refresh_rollup)'
                                 ELSE 'Monthly OHLCV per symbol (month_start = 1st), raw and adjusted; refreshed per loaded window (ops.refresh_rollup)' END);
        -- Written only through ops.refresh_rollup (as the owner), read by everyone who reads bars.
        EXECUTE format('REVOKE ALL ON market.%I FROM PUBLIC, wealth_loader, wealth_bi', view_name);
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
