-- Row-level security on every route a BI login can reach with TimescaleDB, and a BI-facing rolling
-- volatility that is secured and identical on both flavours.
--
-- TimescaleDB stores a hypertable's rows in chunk tables (schema _timescaledb_internal) that carry
-- a copy of the hypertable's table-level privileges but none of its row-level security policies, and
-- every login may use that schema (a query on the hypertable needs it). A table-level SELECT for
-- wealth_bi on a portfolio hypertable therefore let a BI login read every owner's rows by naming a
-- chunk. What holds instead:
--   * wealth_bi reads row-secured hypertables through column-level SELECT on every column: a query on the
--     hypertable works exactly as before (through its policies), and TimescaleDB copies only the
--     table-level privileges to a chunk it creates, so chunks created by later loads, compression or
--     refreshes carry nothing for BI;
--   * ops.secure_timescale_access() revokes every privilege of wealth_bi and PUBLIC on the relations
--     wealth_owner owns in TimescaleDB's internal schemas (existing chunks, which a column GRANT on
--     the hypertable reaches; compressed hypertables and their chunks; materialization hypertables,
--     partial and direct views of continuous aggregates). ops.enable_timeseries and
--     ops.enable_portfolio_rls call it, so later migrations keep the rule;
--   * continuous aggregates cannot carry row-level security, so portfolio.rolling_volatility_30d is
--     now a security_barrier view over an owner-only aggregate, portfolio.rolling_volatility_30d_agg
--     (a continuous aggregate with TimescaleDB, a view without), filtering by the same
--     portfolio.visible_portfolio_ids() as the policies. Same name, columns and rows on both.
-- Without TimescaleDB only the rolling volatility changes.

CREATE FUNCTION ops.secure_timescale_access() RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
DECLARE
    rel regclass;
    cols text;
    changed integer := 0;
BEGIN
    IF NOT ops.timescale_enabled() THEN
        RETURN 0;
    END IF;
    -- Hypertables under row-level security readable by BI at table level: column level instead.
    -- (Only those: TimescaleDB refuses compression on them, while a column GRANT on a compressed
    -- hypertable fails on its compressed twin; chunks of the market hypertables hold nothing a BI
    -- login cannot read through the hypertable anyway, and lose BI's privileges below.)
    FOR rel IN EXECUTE
        'SELECT c.oid::regclass FROM _timescaledb_catalog.hypertable h '
        'JOIN pg_namespace n ON n.nspname = h.schema_name '
        'JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = h.table_name '
        'WHERE c.relrowsecurity AND h.schema_name IN (''ref'', ''market'', ''analytics'', ''portfolio'', ''models'', ''marts'')'
    LOOP
        IF EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
                   WHERE c.oid = rel AND a.grantee = 'wealth_bi'::regrole AND a.privilege_type = 'SELECT') THEN
            SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
            FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped;
            EXECUTE format('REVOKE SELECT ON %s FROM wealth_bi', rel);
            EXECUTE format('GRANT SELECT (%s) ON %s TO wealth_bi', cols, rel);
            changed := changed + 1;
        END IF;
    END LOOP;
    -- Nothing for BI or PUBLIC on the internal relations of the warehouse's hypertables and aggregates.
    FOR rel IN EXECUTE
        'SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace '
        'WHERE c.relkind IN (''r'', ''p'', ''v'', ''m'', ''f'') AND c.relowner = ''wealth_owner''::regrole '
        'AND (n.nspname = ''_timescaledb_internal'' '
        '     OR n.nspname IN (SELECT schema_name FROM _timescaledb_catalog.chunk)) '
        'AND (EXISTS (SELECT 1 FROM aclexplode(c.relacl) a '
        '     WHERE a.grantee IN (0, ''wealth_bi''::regrole)) '
        '     OR EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attacl IS NOT NULL))'
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM wealth_bi, PUBLIC', rel);
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$;
COMMENT ON FUNCTION ops.secure_timescale_access() IS
    'TimescaleDB: BI reads hypertables through column-level SELECT (not copied to new chunks) and has no privilege on chunks, compressed chunks or continuous-aggregate internals';

-- 0001's ops.enable_timeseries, then the rule above.
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
    PERFORM ops.secure_timescale_access();
    RETURN true;
END
$$;

-- 0003's ops.enable_portfolio_rls, then the rule above (a portfolio hypertable's BI grant becomes
-- column-level and its chunks lose it).
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
    PERFORM ops.secure_timescale_access();
END
$$;

-- The rolling volatility: an owner-only aggregate and a secured view of the old name for everyone.
DO $migration$
BEGIN
    IF ops.timescale_enabled() THEN
        ALTER MATERIALIZED VIEW portfolio.rolling_volatility_30d RENAME TO rolling_volatility_30d_agg;
        COMMENT ON VIEW portfolio.rolling_volatility_30d_agg IS
            'Owner-only continuous aggregate of portfolio_metrics (every portfolio); read portfolio.rolling_volatility_30d';
    ELSE
        DROP VIEW portfolio.rolling_volatility_30d;
        CREATE VIEW portfolio.rolling_volatility_30d_agg AS
            SELECT portfolio_id, session_date, volatility_30 FROM portfolio.portfolio_metrics;
        COMMENT ON VIEW portfolio.rolling_volatility_30d_agg IS
            'Owner-only view of portfolio_metrics (every portfolio); read portfolio.rolling_volatility_30d';
    END IF;
END
$migration$;
REVOKE ALL ON portfolio.rolling_volatility_30d_agg FROM PUBLIC, wealth_bi;
GRANT SELECT ON portfolio.rolling_volatility_30d_agg TO wealth_loader;

-- A view with its owner's rights (it reads the aggregate as wealth_owner) that returns the rows of
-- the portfolios the session's login may read, as the policies do; the pipeline roles (and
-- superusers) see every portfolio. security_barrier: a caller's predicates and functions are
-- applied only to rows that passed the filter, so they cannot observe filtered-out rows.
CREATE VIEW portfolio.rolling_volatility_30d WITH (security_barrier = true) AS
    SELECT a.portfolio_id, a.session_date, a.volatility_30
    FROM portfolio.rolling_volatility_30d_agg AS a
    WHERE pg_has_role(current_user, 'wealth_owner', 'USAGE')
       OR pg_has_role(current_user, 'wealth_loader', 'USAGE')
       OR a.portfolio_id IN (SELECT portfolio.visible_portfolio_ids());
COMMENT ON VIEW portfolio.rolling_volatility_30d IS
    'Rolling 30-session annualized volatility per portfolio and day; a BI login sees its own portfolios only';
REVOKE ALL ON portfolio.rolling_volatility_30d FROM PUBLIC;
GRANT SELECT ON portfolio.rolling_volatility_30d TO wealth_bi, wealth_loader;

SELECT ops.secure_timescale_access();
