"""One summary of the pipeline's health, for a person (``wealth-pipeline status``) or a monitor (``--json``).

It reads what the system already records: the Dagster instance (materialized sessions, check results,
runs), the lakehouse (quarantine tables' recent rows per file, size), the warehouse (size) and the backup location (latest
backup and its age). ``attention`` lists everything a person should act on; the command exits
non-zero when it is not empty. A part that cannot be reached (the warehouse server down, the backup
bucket unreachable, the Dagster storage down) is itself reported under ``attention``, with the error,
so a monitor sees "unreachable" rather than a traceback or a silently missing section.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import psycopg

from wealth_pipeline.lakehouse.store import LakehouseError, ObjectStore
from wealth_pipeline.operations import freshness
from wealth_pipeline.operations import manifest as lake_manifest
from wealth_pipeline.operations.location import BackupLocation
from wealth_pipeline.operations.verify import check_latest_backup

CONNECT_TIMEOUT_S = 5


class InstanceUnreachableError(RuntimeError):
    """The Dagster instance's storage (DAGSTER_HOME's dagster.yaml) cannot be reached."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _store_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable local folder or S3 endpoint raises (botocore only when installed)."""
    errors: tuple[type[BaseException], ...] = (OSError, LakehouseError)
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError, ClientError

        errors = (*errors, BotoCoreError, ClientError)
    return errors


@contextlib.contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """``DagsterInstance.get()``; :class:`InstanceUnreachableError` (one line) when its storage is down.

    dagster-postgres retries the first connection five times before it gives up (about 10 s).
    """
    from dagster_postgres.utils import DagsterPostgresException

    try:
        instance = dg.DagsterInstance.get()
    except DagsterPostgresException as exc:
        cause = exc.__cause__ or exc.__context__
        raise InstanceUnreachableError(f"Dagster instance storage unreachable: {_one_line(cause or exc)}") from None
    with instance:
        yield instance


def unreachable_document(now: dt.datetime, problem: str) -> dict[str, Any]:
    """The status document when nothing but the problem can be read (the Dagster instance is down)."""
    return {"as_of": now.isoformat(), "error": problem, "attention": [problem]}


_PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


@dataclass(frozen=True)
class StatusInputs:
    instance: dg.DagsterInstance
    asset_graph: Any
    warehouse_url: str | None
    lakehouse: ObjectStore | None
    backups: BackupLocation | None
    now: dt.datetime
    lag: dt.timedelta
    max_backup_age: dt.timedelta
    first_partition: dt.date | None = None
    days: int = 7


def _daily_keys(graph: Any) -> list[dg.AssetKey]:
    from wealth_pipeline.defs.operations.freshness import daily_keys

    return daily_keys(graph)


def _checks(instance: dg.DagsterInstance, graph: Any) -> list[dict[str, Any]]:
    """The latest result of every check that failed (ERROR) or warned (WARN)."""
    keys = list(graph.asset_check_keys)
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys) if keys else {}
    found = []
    for key, record in sorted(records.items(), key=lambda kv: kv[0].to_user_string()):
        evaluation = record.evaluation
        if evaluation is None or evaluation.passed:
            continue
        found.append({
            "check": key.to_user_string(), "severity": evaluation.severity.value,
            "description": evaluation.description, "run_id": record.run_id,
            "at": dt.datetime.fromtimestamp(record.create_timestamp, dt.UTC).isoformat(),
        })
    return found


def _partition_of(run: dg.DagsterRun) -> tuple[str | None, ...]:
    return tuple(run.tags.get(t) for t in _PARTITION_TAGS)


def _runs(instance: dg.DagsterInstance, since: dt.datetime) -> dict[str, list[dict[str, Any]]]:
    """Runs in progress, and failed runs since ``since`` with whether a later run of the same job and
    partition succeeded (then they need nobody)."""
    running = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
                                                          dg.DagsterRunStatus.QUEUED]))
    failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=since))
    succeeded = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], created_after=since))
    records = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in [*failed, *succeeded]]))} if failed else {}

    def created(run: dg.DagsterRun) -> float:
        return records[run.run_id].create_timestamp.timestamp()

    failures = []
    for run in failed:
        recovered = any(s.job_name == run.job_name and _partition_of(s) == _partition_of(run) and created(s) > created(run)
                        for s in succeeded)
        failures.append({"run_id": run.run_id, "job": run.job_name, "partition": run.tags.get("dagster/partition")
                         or "..".join(p for p in _partition_of(run)[1:] if p) or None,
                         "at": dt.datetime.fromtimestamp(created(run), dt.UTC).isoformat(), "recovered": recovered})
    return {"running": [{"run_id": r.run_id, "job": r.job_name, "status": r.status.value} for r in running],
            "failed": failures}


def _quarantine(store: ObjectStore, since: dt.datetime) -> list[dict[str, Any]]:
    """Rows quarantined since ``since``, per quarantine table and source file (``lakehouse.quarantine``)."""
    from wealth_pipeline.lakehouse import quarantine
    from wealth_pipeline.lakehouse.store import Lakehouse

    return quarantine.recent(Lakehouse(store), since)


def collect(inputs: StatusInputs) -> dict[str, Any]:
    """The status document; ``attention`` is empty when nothing needs a person."""
    attention: list[str] = []
    since = inputs.now - dt.timedelta(days=inputs.days)
    keys = _daily_keys(inputs.asset_graph)
    materialized = {k.to_user_string(): {dt.date.fromisoformat(p) for p in inputs.instance.get_materialized_partitions(k)}
                    for k in keys}
    fresh = freshness.evaluate(materialized, inputs.now, inputs.lag, inputs.first_partition)
    late = [f for f in fresh if f.late]
    if late:
        attention.append(f"{len(late)} daily asset(s) late for session {late[0].expected}: "
                         f"{', '.join(f.asset for f in late[:6])}{' ...' if len(late) > 6 else ''}")
    checks = _checks(inputs.instance, inputs.asset_graph)
    errors = [c for c in checks if c["severity"] == "ERROR"]
    if errors:
        attention.append(f"{len(errors)} failing check(s): {', '.join(c['check'] for c in errors[:5])}")
    runs = _runs(inputs.instance, since)
    unrecovered = [r for r in runs["failed"] if not r["recovered"]]
    if unrecovered:
        named = ", ".join(f"{r['job']} {r['partition'] or ''}".strip() for r in unrecovered[:5])
        attention.append(f"{len(unrecovered)} failed run(s) not re-run successfully: {named}")
    doc: dict[str, Any] = {
        "as_of": inputs.now.isoformat(),
        "freshness_lag_hours": inputs.lag.total_seconds() / 3600,
        "assets": [f.as_dict() for f in fresh],
        "checks_not_passing": checks,
        "runs": runs,
    }
    if inputs.lakehouse is not None:
        try:
            stats = lake_manifest.object_stats(inputs.lakehouse)
            quarantined = _quarantine(inputs.lakehouse, since)
        except _store_errors() as exc:
            doc["lakehouse"] = {"uri": inputs.lakehouse.uri(), "error": _one_line(exc)}
            attention.append(f"lakehouse {inputs.lakehouse.uri()} unreachable: {_one_line(exc)}")
        else:
            doc["quarantine"] = {"days": inputs.days, "files": quarantined, "rows": sum(f["rows"] or 0 for f in quarantined)}
            if quarantined:
                attention.append(f"{doc['quarantine']['rows']} quarantined row(s) in {len(quarantined)} file(s) in the last "
                                 f"{inputs.days} days (see docs/operations.md: handle a quarantined vendor file)")
            doc["lakehouse"] = {"uri": inputs.lakehouse.uri(), "files": len(stats), "size_bytes": sum(s.size for s in stats)}
    if inputs.warehouse_url:
        try:
            with psycopg.connect(inputs.warehouse_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                doc["warehouse"] = {"size_bytes": int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])}
        except psycopg.OperationalError as exc:
            doc["warehouse"] = {"error": _one_line(exc)}
            attention.append(f"warehouse unreachable: {_one_line(exc)}")
    if inputs.backups is not None:
        try:
            check = check_latest_backup(inputs.backups, inputs.now, inputs.max_backup_age, deep=False)
        except _store_errors() as exc:
            doc["backup"] = {"location": inputs.backups.store.uri(), "error": _one_line(exc)}
            attention.append(f"backup location {inputs.backups.store.uri()} unreachable: {_one_line(exc)}")
        else:
            doc["backup"] = {"location": inputs.backups.store.uri(), **check.as_dict()}
            if not check.passed:
                attention.extend(f"backup: {p}" for p in check.problems)
    doc["attention"] = attention
    return doc


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def render(doc: dict[str, Any]) -> str:
    """The one-screen text form of :func:`collect`'s document (or of :func:`unreachable_document`'s)."""
    if "assets" not in doc:
        return "\n".join([f"wealth-pipeline status as of {doc['as_of']}", "", "NEEDS ATTENTION:",
                          *(f"  - {a}" for a in doc["attention"])])
    lines = [f"wealth-pipeline status as of {doc['as_of']}  (freshness lag {doc['freshness_lag_hours']:g} h after the close)"]
    lines.append("")
    lines.append("latest materialized session per daily asset:")
    for a in doc["assets"]:
        flag = "LATE" if a["late"] else "ok"
        lines.append(f"  {a['asset']:32s} {a['latest_session'] or 'none':12s} expected {a['expected_session'] or '-':12s} {flag}")
    lines.append("")
    checks = doc["checks_not_passing"]
    lines.append(f"checks failing or warning: {len(checks) or 'none'}")
    lines.extend(f"  [{c['severity']}] {c['check']}: {c['description'] or ''}" for c in checks[:15])
    runs = doc["runs"]
    lines.append(f"runs in progress: {len(runs['running']) or 'none'}")
    lines.extend(f"  {r['run_id']} {r['job']} {r['status']}" for r in runs["running"][:10])
    lines.append(f"failed runs: {len(runs['failed']) or 'none'}")
    lines.extend(f"  {r['run_id']} {r['job']} {r['partition'] or ''} at {r['at']}{' (re-run since: ok)' if r['recovered'] else ''}"
                 for r in runs["failed"][:10])
    if "quarantine" in doc:
        q = doc["quarantine"]
        lines.append(f"quarantined rows, last {q['days']} days: {q['rows']} in {len(q['files'])} file(s)")
        lines.extend(f"  {f['rows']} rows  {f['file']}" for f in q["files"][:10])
    for part in ("warehouse", "lakehouse", "backup"):
        if "error" in doc.get(part, {}):
            lines.append(f"{part}: UNREACHABLE ({doc[part]['error']})")
    if "backup" in doc and "error" not in doc["backup"]:
        b = doc["backup"]
        age = f"{b['age_hours']:.1f} h old" if b.get("age_hours") is not None else "none"
        lines.append(f"last backup: {b['backup_id'] or 'none'} ({age}) in {b['location']}")
    if "size_bytes" in doc.get("warehouse", {}):
        lines.append(f"warehouse size: {_size(doc['warehouse']['size_bytes'])}")
    if "size_bytes" in doc.get("lakehouse", {}):
        lines.append(f"lakehouse size: {_size(doc['lakehouse']['size_bytes'])} in {doc['lakehouse']['files']} files ({doc['lakehouse']['uri']})")
    lines.append("")
    if doc["attention"]:
        lines.append("NEEDS ATTENTION:")
        lines.extend(f"  - {a}" for a in doc["attention"])
    else:
        lines.append("all good: nothing needs attention")
    return "\n".join(lines)
