-- Users, portfolios and transactions with row-level security.
--
-- A BI login sees the rows of the portfolios whose owner is mapped to it in
-- portfolio.users.login_role, compared with session_user: SET ROLE cannot change session_user, so a
-- BI user cannot read as someone else, and a login without a mapping sees nothing. The pipeline
-- roles (wealth_owner, wealth_loader) see and write everything through the explicit pipeline_all
-- policy; FORCE ROW LEVEL SECURITY makes the policies apply to the table owner too, so no role
-- other than a superuser reads a portfolio table without going through a policy.

CREATE TABLE portfolio.users (
    user_id       text PRIMARY KEY,
    display_name  text,
    login_role    text UNIQUE
);
COMMENT ON COLUMN portfolio.users.login_role IS 'PostgreSQL login role of this user''s BI access (session_user)';

CREATE TABLE portfolio.portfolios (
    portfolio_id   text PRIMARY KEY,
    owner_id       text NOT NULL REFERENCES portfolio.users (user_id),
    name           text,
    base_currency  text NOT NULL DEFAULT 'USD',
    benchmark      text
);
CREATE INDEX portfolios_owner_idx ON portfolio.portfolios (owner_id);

CREATE TABLE portfolio.transactions (
    portfolio_id    text NOT NULL,
    transaction_id  text NOT NULL,
    trade_date      date NOT NULL,
    type            text NOT NULL,
    symbol          text,
    quantity        double precision,
    price           double precision,
    amount          double precision,
    currency        text,
    PRIMARY KEY (portfolio_id, transaction_id)
);
CREATE INDEX transactions_portfolio_date_idx ON portfolio.transactions (portfolio_id, trade_date);

-- The portfolios the session's login may read. SECURITY DEFINER (as wealth_owner, who passes the
-- pipeline_all policy) so that the policies below do not recurse into each other.
CREATE FUNCTION portfolio.visible_portfolio_ids() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
AS $$
    SELECT p.portfolio_id
    FROM portfolio.portfolios AS p
    JOIN portfolio.users AS u ON u.user_id = p.owner_id
    WHERE u.login_role = session_user::text
$$;
GRANT EXECUTE ON FUNCTION portfolio.visible_portfolio_ids() TO wealth_bi, wealth_loader;

-- Put the portfolio row-level security on a table (or a security_invoker view) keyed by a
-- portfolio column. Later migrations call it for every new portfolio-scoped table or mart:
--     SELECT ops.enable_portfolio_rls('portfolio.positions');
-- Materialized views cannot carry row-level security and are refused.
CREATE FUNCTION ops.enable_portfolio_rls(tbl regclass, portfolio_column name DEFAULT 'portfolio_id')
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

-- users: a BI login sees its own row only.
ALTER TABLE portfolio.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE portfolio.users FORCE ROW LEVEL SECURITY;
CREATE POLICY pipeline_all ON portfolio.users FOR ALL TO wealth_owner, wealth_loader
    USING (true) WITH CHECK (true);
CREATE POLICY bi_self ON portfolio.users FOR SELECT TO wealth_bi
    USING (login_role = session_user::text);
GRANT SELECT ON portfolio.users TO wealth_bi;
GRANT SELECT, INSERT, UPDATE, DELETE ON portfolio.users TO wealth_loader;

SELECT ops.enable_portfolio_rls('portfolio.portfolios');
SELECT ops.enable_portfolio_rls('portfolio.transactions');
