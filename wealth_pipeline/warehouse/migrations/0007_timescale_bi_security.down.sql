-- Undo 0007: the rolling volatility back to 0005's objects, table-level BI grants on hypertables,
-- and 0001/0003's helper functions. Chunk privileges are left as they are (BI stays without them).

DROP VIEW portfolio.rolling_volatility_30d;
DO $migration$
BEGIN
    IF ops.timescale_enabled() THEN
        ALTER MATERIALIZED VIEW portfolio.rolling_volatility_30d_agg RENAME TO rolling_volatility_30d;
        REVOKE ALL ON portfolio.rolling_volatility_30d FROM PUBLIC, wealth_bi;
        GRANT SELECT ON portfolio.rolling_volatility_30d TO wealth_loader;
        COMMENT ON VIEW portfolio.rolling_volatility_30d IS
            'Rolling 30-session annualized volatility per portfolio and day (continuous aggregate of portfolio_metrics)';
    ELSE
        DROP VIEW portfolio.rolling_volatility_30d_agg;
        CREATE VIEW portfolio.rolling_volatility_30d AS
            SELECT portfolio_id, session_date, volatility_30 FROM portfolio.portfolio_metrics;
        PERFORM ops.enable_portfolio_rls('portfolio.rolling_volatility_30d');
        COMMENT ON VIEW portfolio.rolling_volatility_30d IS
            'Rolling 30-session annualized volatility per portfolio and day (view of portfolio_metrics)';
    END IF;
END
$migration$;

-- Hypertables BI reads at column level: table level again (as 0001-0006 granted them).
DO $migration$
DECLARE
    rel regclass;
    cols text;
BEGIN
    IF NOT ops.timescale_enabled() THEN
        RETURN;
    END IF;
    FOR rel IN EXECUTE
        'SELECT format(''%I.%I'', h.schema_name, h.table_name)::regclass FROM _timescaledb_catalog.hypertable h '
        'WHERE h.schema_name IN (''ref'', ''market'', ''analytics'', ''portfolio'', ''models'', ''marts'')'
    LOOP
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a
        WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
          AND has_column_privilege('wealth_bi', rel, a.attnum, 'SELECT')
          AND EXISTS (SELECT 1 FROM aclexplode(a.attacl) x WHERE x.grantee = 'wealth_bi'::regrole);
        IF cols IS NOT NULL THEN
            EXECUTE format('REVOKE SELECT (%s) ON %s FROM wealth_bi', cols, rel);
            EXECUTE format('GRANT SELECT ON %s TO wealth_bi', rel);
        END IF;
    END LOOP;
END
$migration$;

CREATE OR REPLACE FUNCTION ops.enable_timeseries(
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

CREATE OR REPLACE FUNCTION ops.enable_portfolio_rls(tbl regclass, portfolio_column name DEFAULT 'portfolio_id')
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
DECLARE
    kind "char";
BEGIN
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = tbl;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                   WHERE a.attrelid = tbl AND a.attname = portfolio_column AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'ops.enable_portfolio_rls: % has no column %', tbl, portfolio_column;
    END IF;
    IF kind IN ('r', 'p') THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('DROP POLICY IF EXISTS pipeline_all ON %s', tbl);
        EXECUTE format('CREATE POLICY pipeline_all ON %s FOR ALL TO wealth_owner, wealth_loader '
                       'USING (true) WITH CHECK (true)', tbl);
        EXECUTE format('DROP POLICY IF EXISTS bi_own_portfolios ON %s', tbl);
        EXECUTE format('CREATE POLICY bi_own_portfolios ON %s FOR SELECT TO wealth_bi '
                       'USING (%I IN (SELECT portfolio.visible_portfolio_ids()))', tbl, portfolio_column);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO wealth_loader', tbl);
    ELSIF kind = 'v' THEN
        -- A view reads its tables with the querying user's rights, hence through their policies.
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', tbl);
        EXECUTE format('GRANT SELECT ON %s TO wealth_loader', tbl);
    ELSE
        RAISE EXCEPTION 'ops.enable_portfolio_rls: % is not a table or a view (relkind %); materialized '
                        'views cannot enforce row-level security', tbl, kind;
    END IF;
    EXECUTE format('REVOKE ALL ON %s FROM wealth_bi', tbl);
    EXECUTE format('GRANT SELECT ON %s TO wealth_bi', tbl);
END
$$;

DROP FUNCTION ops.secure_timescale_access();
