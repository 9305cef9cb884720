"""Dagster instance storage for the repository's ``dagster.yaml``: PostgreSQL, wherever Dagster is started.

``dagster.yaml`` at the repository root names these classes instead of dagster-postgres' own so
that it needs no variable: Dagster's commands run from the root in a plain shell (``dagster dev``,
``dg dev``, ``dagster definitions validate -w workspace.yaml``, which read ``./dagster.yaml`` when
``DAGSTER_HOME`` is unset) use the same storage as ``wealth-pipeline`` and ``make ui``.
The URL is ``WEALTH_DAGSTER_DATABASE_URL`` when set (every ``wealth-pipeline`` command exports it);
otherwise the embedded default, resolved as ``wealth-pipeline`` does (``environment.bootstrap``:
the local cluster in ``$WEALTH_HOME/pg``, started if needed, or the ``dagster`` database on
``WEALTH_DATABASE_URL``'s server), and both URLs are exported so the runs this process launches
find the warehouse. Each class returns dagster-postgres' own storage object (the project's batched
event log for events); only the URL's resolution is added.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster_postgres import PostgresRunStorage, PostgresScheduleStorage

from wealth_pipeline.instance_storage import BatchedPostgresEventLogStorage


def instance_storage_config(config_value: Mapping[str, Any]) -> dict[str, Any]:
    """``config_value`` with ``postgres_url`` filled in when the file gives neither a URL nor ``postgres_db``."""
    if config_value.get("postgres_url") or config_value.get("postgres_db"):
        return dict(config_value)
    from wealth_pipeline.settings import Settings

    url = Settings.from_env().dagster_database_url
    if not url:
        from wealth_pipeline import environment

        runtime = environment.bootstrap(start_database=True, export=False)
        url = environment.dagster_storage_url(runtime.dagster_url)
        # The runs this process launches (dagster dev's run workers) need the same two URLs.
        os.environ.setdefault("WEALTH_DATABASE_URL", runtime.warehouse_url)
        os.environ["WEALTH_DAGSTER_DATABASE_URL"] = url
    return {**config_value, "postgres_url": url}


class ProjectRunStorage(PostgresRunStorage):
    """dagster-postgres' run storage on the project's instance database."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return PostgresRunStorage.from_config_value(inst_data, instance_storage_config(config_value))


class ProjectEventLogStorage(BatchedPostgresEventLogStorage):
    """The project's batched event log (``instance_storage``) on the project's instance database."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return BatchedPostgresEventLogStorage.from_config_value(inst_data, instance_storage_config(config_value))


class ProjectScheduleStorage(PostgresScheduleStorage):
    """dagster-postgres' schedule storage on the project's instance database."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return PostgresScheduleStorage.from_config_value(inst_data, instance_storage_config(config_value))
