"""Dagster event-log storage for this project: dagster-postgres with planned events written in batches.

Measured reason for extending dagster-postgres (Dagster 1.13): with ``DAGSTER_EVENT_BATCH_SIZE`` set,
Dagster hands a run's ``ASSET_MATERIALIZATION_PLANNED`` events to ``store_event_batch`` as one batch
(``RunDomain._log_asset_planned_events``), but ``PostgresEventLogStorage.store_event_batch`` only
writes materializations and observations as one statement; any other batch falls back to one
``store_event`` per event, i.e. two new connections and about five committed transactions per
asset-partition. A single-run backfill of the daily graph over 2,520 sessions plans about 63,000 of
them: measured here, 1,000 planned events took 5,179 transactions and most of a 30 s run. This class
writes such a batch the way the materialization batch is written: one ``INSERT ... RETURNING`` and
one index transaction updating each asset's row with its last planned event (what the per-event path
leaves there too). Per-partition planned events are kept (rather than
``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``), so failed and in-progress partitions still show
in the UI. A planned asset check of a ranged run is one row per check and run, the row its
(unpartitioned) evaluation updates (``_store_asset_check_evaluation_planned``). A batch
of materializations (or observations) is written as dagster-postgres writes it, but its rows go as one
executemany rather than one freshly compiled multi-VALUES statement (``_insert_events``). Anything
else still goes through dagster-postgres unchanged.

It also keeps a small connection pool (dagster-postgres opens a new connection, i.e. a new server
process, for every event: about 5 ms each on a loaded 2-core machine, for the ~14,000 step, log and
check events of one 20-security demo year). Pooled connections are checked with a pre-ping.

Processes reading the instance (webserver, daemon, runs) import only this module and dagster-postgres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagster import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._serdes import serialize_value
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

if TYPE_CHECKING:
    from dagster._core.events.log import EventLogEntry
    from dagster._serdes import ConfigurableClassData

PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
RECORDED_AS_BATCH = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION}


def _kind(event: EventLogEntry) -> DagsterEventType | None:
    """The Dagster event type of a log entry; None for a plain log line."""
    return event.get_dagster_event().event_type if event.is_dagster_event else None


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
    """``PostgresEventLogStorage`` that stores planned, materialization and observation batches in one executemany each."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider: Any = None) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider=token_provider)
        unpooled = self._engine
        self._engine = create_pg_engine(
            self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
            pool_size=2, max_overflow=8, pool_pre_ping=True, pool_recycle=600,
        )
        unpooled.dispose()

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()  # close the pooled connections with the instance

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchedPostgresEventLogStorage:
        # The parent builds a PostgresEventLogStorage by name; build this class from the same config.
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        planned = [e for e in events if _kind(e) == PLANNED]
        others = [e for e in events if _kind(e) != PLANNED]
        if planned:
            self._store_asset_events(planned)
        if not others:
            return
        if len({_kind(e) for e in others}) == 1 and _kind(others[0]) in RECORDED_AS_BATCH:
            # dagster-postgres drops asset-failed-to-materialize events from such a batch; so does this.
            self._store_asset_events([e for e in others if not e.get_dagster_event().is_asset_failed_to_materialize])
        else:
            super().store_event_batch(others)

    def _insert_events(self, events: Sequence[EventLogEntry]) -> list[int]:
        """Insert event rows as one executemany; their storage ids, in the events' order.

        Measured reason (issue 23): dagster-postgres builds one ``INSERT ... VALUES (...), (...)`` with
        every row's bind parameters and SQLAlchemy compiles it anew for each batch: a fifth of the
        event-recording time of a 2,608-session run (py-spy, ``SQLCompiler.visit_insert`` under
        ``prepare_insert_event_batch``). An executemany compiles once (SQLAlchemy caches it) and is
        sent in pages by its insertmanyvalues path, ids returned in parameter order.
        """
        statement = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
        rows = [self._event_to_row(event) for event in events]
        with self._connect() as conn:
            event_ids = [int(row[0]) for row in conn.execute(statement, rows).fetchall()]
        if len(event_ids) != len(events):
            raise RuntimeError(f"stored {len(event_ids)} of {len(events)} events")
        return event_ids

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """One ``asset_check_executions`` row per planned check and run, the row its evaluation updates.

        Dagster 1.13 plans a check of a ranged run with one row per partition of the run, even when
        the check has no partitions definition; its evaluation then carries no partition, finds none
        of those rows (it updates ``partition IS NULL``) and inserts one more, so the 2,608 planned
        rows of each check stay PLANNED for ever. Measured (issue 23): a 2,608-session run of the
        daily graph left 341,799 such rows, 1.4 KB each, and writing them was a quarter of its run
        planning. This project's checks judge a run's window and none is partitioned (the
        definitions test pins that), so the one row written here is the row the evaluation turns
        into SUCCEEDED or FAILED. A partitioned check added later would still record its
        evaluations (Dagster inserts a row per evaluated partition) but show no per-partition
        planned state while its run is in progress.
        """
        planned = event.get_dagster_event().event_specific_data
        row = {
            "asset_key": planned.asset_key.to_string(), "check_name": planned.check_name, "run_id": event.run_id,
            "partition": None, "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), [row])

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of planned, materialization or observation events: the rows, their indexed tags,
        and each asset's row updated with its last event (what the per-event path leaves there too)."""
        if not events:
            return
        event_ids = self._insert_events(events)
        last_per_asset: dict[str, tuple[EventLogEntry, int]] = {}
        for event, event_id in zip(events, event_ids, strict=True):
            last_per_asset[event.get_dagster_event().asset_key.to_string()] = (event, event_id)
        with self.index_transaction() as conn:
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in last_per_asset.values():
                self._store_asset_event(conn, event, event_id)
