-- Undo 0001. ops itself, ops.schema_migrations and ops.alembic_version stay (migrate.py's preparation).
DROP FUNCTION ops.enable_timeseries(regclass, name, name[], interval, interval);
DROP FUNCTION ops.timescale_enabled();
DROP TABLE ops.loads;

ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, models, marts
    REVOKE EXECUTE ON FUNCTIONS FROM wealth_bi, wealth_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner
    GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, portfolio, models, ops
    REVOKE USAGE, SELECT, UPDATE ON SEQUENCES FROM wealth_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA marts
    REVOKE SELECT ON TABLES FROM wealth_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, models, ops
    REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM wealth_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE wealth_owner IN SCHEMA ref, market, analytics, models, marts
    REVOKE SELECT ON TABLES FROM wealth_bi;

REVOKE USAGE ON SCHEMA ops FROM wealth_loader;
COMMENT ON SCHEMA ops IS NULL;

DROP SCHEMA marts;
DROP SCHEMA models;
DROP SCHEMA portfolio;
DROP SCHEMA analytics;
DROP SCHEMA market;
DROP SCHEMA ref;
