"""Run dbt by hand against the pipeline's warehouse: ``python -m wealth_pipeline.defs.marts build``.

The connection comes from ``WEALTH_DATABASE_URL`` (parsed into the ``DBT_PG_*`` variables of
``dbt_project/profiles.yml``); the arguments are dbt's own.
"""

import os
import subprocess
import sys

from wealth_pipeline.defs.marts.project import DBT_PROJECT_DIR, dbt_env, dbt_executable


def main(argv: list[str]) -> int:
    """Run ``dbt <argv>`` in the dbt project with the warehouse connection; returns dbt's exit code."""
    url = os.environ.get("WEALTH_DATABASE_URL")
    if not url:
        print("WEALTH_DATABASE_URL is not set (the warehouse URL dbt connects to)", file=sys.stderr)
        return 2
    env = {**os.environ, **dbt_env(url), "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)}
    return subprocess.call([dbt_executable(), *argv], cwd=DBT_PROJECT_DIR, env=env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["build"]))
