-- Undo 0008: the refresh entry points, their jobs and their log; the loader's 0001 privileges on
-- the rollup registry and the migration history come back.

DO $migration$
DECLARE
    job integer;
BEGIN
    IF ops.timescale_enabled() THEN
        FOR job IN EXECUTE 'SELECT job_id FROM timescaledb_information.jobs '
                           'WHERE proc_schema = ''ops'' AND proc_name = ''run_rollup_refresh''' LOOP
            EXECUTE format('SELECT delete_job(%s)', job);
        END LOOP;
    END IF;
END
$migration$;
DROP FUNCTION ops.rollup_refresh_status(bigint);
DROP FUNCTION ops.request_rollup_refresh(date, date);
DROP PROCEDURE ops.run_rollup_refresh(integer, jsonb);
DROP TABLE ops.rollup_refreshes;
GRANT SELECT, INSERT, UPDATE, DELETE ON ops.rollups TO wealth_loader;
