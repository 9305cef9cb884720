-- The pipeline connects as wealth_loader, which owns nothing: what it needs the owner for goes
-- through owner-defined entry points it may EXECUTE, and nothing else.
--
-- Rollup refreshes. Plain PostgreSQL: ops.refresh_rollup (0002, SECURITY DEFINER) already refreshes
-- a registered materialized view as its owner. TimescaleDB: refresh_continuous_aggregate needs the
-- aggregate's owner and refuses to run inside a transaction block or a function, and a SECURITY
-- DEFINER procedure (or one with a SET clause) is always an atomic context, so no definer routine can
-- call it. A background job can: TimescaleDB runs a job's procedure as the job's owner in a
-- non-atomic context, which is how its own refresh policies work. So:
--   * ops.request_rollup_refresh(start, end) (SECURITY DEFINER, fixed search_path) records a request
--     in ops.rollup_refreshes and, on TimescaleDB, schedules a one-shot job owned by wealth_owner
--     running ops.run_rollup_refresh for it; on plain PostgreSQL it refreshes at once;
--   * ops.run_rollup_refresh(job_id, config) (no definer, no SET clause: it must stay non-atomic; not
--     executable by the loader or BI) refreshes the whole buckets covering the window of every
--     registered continuous-aggregate rollup, marks the request done and unschedules its job;
--   * ops.rollup_refresh_status(request_id) (SECURITY DEFINER) says pending / done / failed: <error>
--     and deletes the finished request's job.
-- The Python side (timescale.refresh_rollups) requests and waits; owners refresh directly.
--
-- Bookkeeping: the loader keeps writing ops.loads (its audit rows) but may no longer change the
-- rollup registry or the migration history, which 0001's default privileges let it write.

CREATE TABLE ops.rollup_refreshes (
    request_id    bigserial PRIMARY KEY,
    window_start  date NOT NULL,
    window_end    date NOT NULL CHECK (window_end >= window_start),
    requested_by  name NOT NULL DEFAULT session_user,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    job_id        integer,
    finished_at   timestamptz,
    refreshed     text[]
);
COMMENT ON TABLE ops.rollup_refreshes IS
    'Rollup refreshes requested through ops.request_rollup_refresh (by the loader): window, job, when done, what was refreshed';
REVOKE ALL ON ops.rollup_refreshes FROM PUBLIC, wealth_loader, wealth_bi;
REVOKE ALL ON SEQUENCE ops.rollup_refreshes_request_id_seq FROM PUBLIC, wealth_loader, wealth_bi;
GRANT SELECT ON ops.rollup_refreshes TO wealth_loader;

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ops.rollups, ops.schema_migrations FROM wealth_loader;

-- The job's procedure: refresh every registered continuous-aggregate rollup for the request's
-- window, whole buckets (weeks from Monday, months from the 1st), then mark the request done.
-- It has no SET search_path clause (a SET clause makes it atomic): it sets the job session's
-- search_path to the extension's schema first and qualifies the other names.
CREATE PROCEDURE ops.run_rollup_refresh(job_id integer, config jsonb)
    LANGUAGE plpgsql
AS $$
DECLARE
    req ops.rollup_refreshes;
    ext name;
    views text[];
    buckets text[];
    caggs text[];
    i integer;
BEGIN
    SELECT * INTO req FROM ops.rollup_refreshes r
    WHERE r.request_id = (config OPERATOR(pg_catalog.->>) 'request_id')::bigint;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ops.run_rollup_refresh: no refresh request %', config;
    END IF;
    SELECT n.nspname INTO ext FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
    WHERE e.extname OPERATOR(pg_catalog.=) 'timescaledb';
    -- The worker's session only (it ends with the job): the extension's schema, nothing writable.
    PERFORM pg_catalog.set_config('search_path', pg_catalog.quote_ident(ext) OPERATOR(pg_catalog.||) ', pg_catalog, pg_temp', false);
    EXECUTE 'SELECT pg_catalog.array_agg(pg_catalog.format(''%I.%I'', view_schema, view_name)) '
            'FROM timescaledb_information.continuous_aggregates' INTO caggs;
    SELECT pg_catalog.array_agg(r.view_name ORDER BY r.view_name), pg_catalog.array_agg(r.bucket ORDER BY r.view_name)
    INTO views, buckets FROM ops.rollups r;
    FOR i IN 1 .. coalesce(pg_catalog.array_length(views, 1), 0) LOOP
        IF NOT views[i] OPERATOR(pg_catalog.=) ANY (coalesce(caggs, '{}')) THEN
            RAISE EXCEPTION 'ops.run_rollup_refresh: registered rollup % is not a continuous aggregate', views[i];
        END IF;
        -- A static CALL: a dynamic one (EXECUTE) runs in an atomic context, which the refresh refuses.
        CALL refresh_continuous_aggregate(views[i]::regclass,
            pg_catalog.date_trunc(buckets[i], req.window_start::timestamp)::date,
            (pg_catalog.date_trunc(buckets[i], req.window_end::timestamp)
                OPERATOR(pg_catalog.+) ('1 ' OPERATOR(pg_catalog.||) buckets[i])::interval)::date);
    END LOOP;
    UPDATE ops.rollup_refreshes r SET finished_at = pg_catalog.clock_timestamp(), refreshed = coalesce(views, '{}')
    WHERE r.request_id = req.request_id;
    EXECUTE pg_catalog.format('SELECT %I.alter_job(%s, scheduled => false)', ext, job_id);
END
$$;
REVOKE ALL ON PROCEDURE ops.run_rollup_refresh(integer, jsonb) FROM PUBLIC, wealth_loader, wealth_bi;
COMMENT ON PROCEDURE ops.run_rollup_refresh(integer, jsonb) IS
    'Body of the one-shot job ops.request_rollup_refresh schedules on TimescaleDB (runs as wealth_owner)';

-- Ask for every registered rollup to be brought up to date for sessions in [window_start, window_end].
-- Returns the request id (see ops.rollup_refresh_status).
CREATE FUNCTION ops.request_rollup_refresh(window_start date, window_end date) RETURNS bigint
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
    -- Owned by current_user, i.e. wealth_owner (this function's owner); after two failed starts or
    -- runs (2 s apart) the status reports the error.
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
GRANT EXECUTE ON FUNCTION ops.request_rollup_refresh(date, date) TO wealth_loader;
COMMENT ON FUNCTION ops.request_rollup_refresh(date, date) IS
    'Refresh every registered rollup for a window as its owner: at once on PostgreSQL, by a one-shot job on TimescaleDB';

-- 'done', 'pending' or 'failed: <error>' for a request; a finished request's job is deleted.
CREATE FUNCTION ops.rollup_refresh_status(request_id bigint) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    req ops.rollup_refreshes;
    ext name;
    failures bigint;
    error text;
    job_exists boolean;
BEGIN
    SELECT * INTO req FROM ops.rollup_refreshes r WHERE r.request_id = rollup_refresh_status.request_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ops.rollup_refresh_status: no refresh request %', request_id;
    END IF;
    IF req.job_id IS NULL THEN
        RETURN CASE WHEN req.finished_at IS NULL THEN 'pending' ELSE 'done' END;
    END IF;
    SELECT n.nspname INTO ext FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'timescaledb';
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.jobs WHERE job_id = $1)' INTO job_exists USING req.job_id;
    IF req.finished_at IS NOT NULL THEN
        IF job_exists THEN
            EXECUTE format('SELECT %I.delete_job(%s)', ext, req.job_id);
        END IF;
        RETURN 'done';
    END IF;
    IF NOT job_exists THEN
        RETURN 'failed: its job ' || req.job_id || ' no longer exists';
    END IF;
    EXECUTE 'SELECT total_failures FROM timescaledb_information.job_stats WHERE job_id = $1' INTO failures USING req.job_id;
    IF coalesce(failures, 0) >= 2 THEN
        EXECUTE 'SELECT err_message FROM timescaledb_information.job_errors WHERE job_id = $1 '
                'ORDER BY start_time DESC LIMIT 1' INTO error USING req.job_id;
        EXECUTE format('SELECT %I.delete_job(%s)', ext, req.job_id);
        RETURN 'failed: ' || coalesce(error, 'job ' || req.job_id || ' failed');
    END IF;
    RETURN 'pending';
END
$$;
GRANT EXECUTE ON FUNCTION ops.rollup_refresh_status(bigint) TO wealth_loader;
COMMENT ON FUNCTION ops.rollup_refresh_status(bigint) IS
    'pending, done or failed: <error> for a rollup refresh request; deletes the job of a finished one';
