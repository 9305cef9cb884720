#!/bin/sh
# First-start initialisation of the TimescaleDB container (docker-entrypoint-initdb.d): a login role
# and a database for Dagster's instance storage, separate from the warehouse and from the superuser.
# The warehouse roles (wealth_owner, wealth_loader, wealth_bi) are created by `wealth-pipeline db upgrade`.
set -eu
: "${DAGSTER_PG_USER:?}" "${DAGSTER_PG_PASSWORD:?}" "${DAGSTER_PG_DB:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v dagster_user="$DAGSTER_PG_USER" -v dagster_password="$DAGSTER_PG_PASSWORD" -v dagster_db="$DAGSTER_PG_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'dagster_user', :'dagster_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'dagster_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'dagster_db', :'dagster_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dagster_db') \gexec
-- PostgreSQL grants CONNECT and TEMPORARY on every new database to PUBLIC: BI logins have no
-- business in Dagster's instance storage, so only its owner (and superusers) may connect.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'dagster_db') \gexec
SQL
