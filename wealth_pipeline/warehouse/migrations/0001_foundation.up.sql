-- Foundation: schemas, grants, default privileges, the load audit table and the TimescaleDB helpers.
-- Runs as wealth_owner (the Alembic environment does SET ROLE), so every object below is owned by it.
-- The ops schema, ops.schema_migrations and ops.alembic_version are created by migrate.py's
-- preparation before any migration.

CREATE SCHEMA ref;
CREATE SCHEMA market;
CREATE SCHEMA analytics;
CREATE SCHEMA portfolio;
CREATE SCHEMA models;
CREATE SCHEMA marts;

COMMENT ON SCHEMA ref IS 'Reference data: securities master';
COMMENT ON SCHEMA market IS 'Market data: daily bars, corporate actions, FX, factor and benchmark returns, rollups';
COMMENT ON SCHEMA analytics IS 'Derived analytics (features, risk measures)';
COMMENT ON SCHEMA portfolio IS 'Users, portfolios and transactions; row-level security on every portfolio-scoped table';
COMMENT ON SCHEMA models IS 'Model outputs (forecasts, scores)';
COMMENT ON SCHEMA marts IS 'BI-facing marts';
COMMENT ON SCHEMA ops IS 'Pipeline operations: migrations, load audit, helper functions';

-- Schema access. BI reads everything but ops; the loader writes every schema but marts.
GRANT USAGE ON SCHEMA ref, market, analytics, portfolio, models, marts TO wealth_bi;
GRANT USAGE ON SCHEMA ref, market, analytics, portfolio, models, marts, ops TO wealth_loader;

-- Default privileges for objects wealth_owner creates from now on (later migrations included).
-- portfolio is deliberately absent for wealth_bi: a portfolio table is readable by BI only after
-- ops.enable_portfolio_rls() has put its row-level security in place (fail closed).
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, models, marts
    GRANT SELECT ON TABLES TO wealth_bi;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, models, ops
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO wealth_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA marts
    GRANT SELECT ON TABLES TO wealth_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, portfolio, models, ops
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO wealth_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, models, marts
    GRANT EXECUTE ON FUNCTIONS TO wealth_bi, wealth_loader;

-- One row per load_window / replace_table / upsert call.
CREATE TABLE ops.loads (
    load_id       bigserial PRIMARY KEY,
    asset         text NOT NULL,
    partition_key text,
    table_name    text NOT NULL,
    window_start  date,
    window_end    date,
    rows          bigint NOT NULL,
    checksum      text NOT NULL,
    run_id        text,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loads_table_window_idx ON ops.loads (table_name, window_start, window_end);
CREATE INDEX loads_asset_partition_idx ON ops.loads (asset, partition_key);
COMMENT ON TABLE ops.loads IS 'Audit of every warehouse load: asset, partition, window, row count, content checksum, run id';

-- Is TimescaleDB installed in this database? Migrations branch on it.
CREATE FUNCTION ops.timescale_enabled() RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog
AS $$ SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') $$;
GRANT EXECUTE ON FUNCTION ops.timescale_enabled() TO wealth_loader;

-- Make a time-series table a hypertable (TimescaleDB) or leave it a plain table (returns false).
-- Chunks of chunk_interval on time_column; compression segmented by entity_columns, ordered by
-- time descending, with a policy compressing chunks older than compress_after (NULL: none).
-- Indexes are the table's own (create_default_indexes => false), identical on both paths.
CREATE FUNCTION ops.enable_timeseries(
    tbl regclass,
    time_column name,
    entity_columns name[],
    chunk_interval interval DEFAULT interval '365 days',
    compress_after interval DEFAULT interval '730 days'
) RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
DECLARE
    ext_schema name;
    segment_by text;
BEGIN
    SELECT n.nspname INTO ext_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'timescaledb';
    IF ext_schema IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'SELECT %I.create_hypertable(%L::regclass, %I.by_range(%L, %L::interval), '
        'create_default_indexes => false, if_not_exists => true)',
        ext_schema, tbl, ext_schema, time_column, chunk_interval);
    IF compress_after IS NOT NULL THEN
        SELECT string_agg(quote_ident(c), ', ') INTO segment_by FROM unnest(entity_columns) AS c;
        EXECUTE format(
            'ALTER TABLE %s SET (timescaledb.compress, timescaledb.compress_segmentby = %L, '
            'timescaledb.compress_orderby = %L)',
            tbl, segment_by, quote_ident(time_column) || ' DESC');
        EXECUTE format(
            'SELECT %I.add_compression_policy(%L::regclass, compress_after => %L::interval, if_not_exists => true)',
            ext_schema, tbl, compress_after);
    END IF;
    RETURN true;
END
$$;
