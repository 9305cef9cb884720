"""Run dbt by hand in ``dbt_project/`` with the project's profile: ``wealth-pipeline dbt ARGS``.

Also ``python -m wealth_pipeline.defs.marts ARGS`` (default ``build``). The connection is the pipeline's
warehouse: ``WEALTH_DATABASE_URL`` when set, else the embedded local cluster (started if needed, as
``wealth-pipeline db start`` does; dbt then connects as its ``wealth_owner`` login, not as the
pipeline's loader), ``WEALTH_DBT_DATABASE_URL`` winning over both, parsed into the ``DBT_PG_*`` variables of
``dbt_project/profiles.yml``; the arguments are dbt's own (``docs generate``, ``test``,
``source freshness``, ``build --select ...``). ``--print-env`` prints those variables as shell
``export`` lines instead, for running the ``dbt`` command itself from ``dbt_project/``:
``eval "$(../.venv/bin/wealth-pipeline dbt --print-env)"``. They hold the warehouse password, like
``wealth-pipeline db url``; they are never written to a file.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

from wealth_pipeline.defs.marts.project import DBT_PROJECT_DIR, dbt_env, dbt_executable

PRINT_ENV = "--print-env"


def dbt_cli_env(database_url: str) -> dict[str, str]:
    """The variables dbt needs to run in ``dbt_project/``: ``DBT_PG_*`` and ``DBT_PROFILES_DIR``."""
    return {**dbt_env(database_url), "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)}


def warehouse_url() -> str:
    """dbt's URL: ``WEALTH_DBT_DATABASE_URL``, else ``WEALTH_DATABASE_URL``, else the local cluster's owner login."""
    from wealth_pipeline import environment

    configured = os.environ.get("WEALTH_DBT_DATABASE_URL") or os.environ.get("WEALTH_DATABASE_URL")
    return configured or environment.bootstrap().dbt_url


def main(argv: Sequence[str]) -> int:
    """Run ``dbt <argv>`` in the dbt project on the warehouse (or print its env); returns the exit code."""
    args = list(argv)
    try:
        env = dbt_cli_env(warehouse_url())
    except ValueError as error:
        print(f"wealth-pipeline dbt: {error}", file=sys.stderr)
        return 2
    if args[:1] == [PRINT_ENV]:
        if len(args) > 1:
            print(f"wealth-pipeline dbt: {PRINT_ENV} takes no dbt arguments, got {' '.join(args[1:])}", file=sys.stderr)
            return 2
        for name, value in sorted(env.items()):
            print(f"export {name}={shlex.quote(value)}")
        return 0
    if not args:
        print(f"wealth-pipeline dbt: give dbt's arguments (e.g. `docs generate`, `test`, `build`) or {PRINT_ENV}",
              file=sys.stderr)
        return 2
    return subprocess.call([dbt_executable(), *args], cwd=DBT_PROJECT_DIR, env={**os.environ, **env})


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["build"]))
