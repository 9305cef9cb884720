"""Consistent backups of the warehouse, the Dagster instance and the lakehouse, and their retention.

Each database is dumped with ``pg_dump`` (custom format, compressed) from a snapshot exported by
a REPEATABLE READ transaction; the per-table row counts and checksums recorded in the manifest
are computed in that same transaction, so they describe exactly what the dump holds. The manifest
records the PostgreSQL, pg_dump and TimescaleDB versions (a TimescaleDB dump restores only into the
same extension version), the roles, the Dagster run history and the lakehouse manifest. With
``lakehouse="copy"`` every lakehouse file is also copied into the backup location, content-addressed
(``objects/<sha256>``), so a file already saved by an earlier backup costs nothing the next time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from wealth_pipeline.lakehouse.store import ObjectStore
from wealth_pipeline.operations import dbstate, pgtools
from wealth_pipeline.operations import manifest as lake_manifest
from wealth_pipeline.operations.location import (
    BackupLocation,
    backup_time,
    new_backup_id,
    object_key,
    sha256_file,
)

FORMAT = 1
LAKEHOUSE_MODES = ("copy", "manifest")


class BackupError(RuntimeError):
    """A backup could not be taken (bad option, tool missing, dump failed)."""


def dump_database(url: str, target: Path, *, kind: str, bindir: Path | None = None) -> dict[str, Any]:
    """pg_dump ``url`` into ``target`` from one snapshot; return its versions and content record.

    ``kind`` is ``warehouse`` (per-table checksums, roles) or ``dagster`` (run history summary).
    """
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            versions = pgtools.server_versions(conn)
            tool = pgtools.find_tool("pg_dump", versions.major, bindir)
            started = time.monotonic()
            pgtools.run_tool([str(tool), "--format=custom", "--compress=6", f"--snapshot={snapshot}",
                              "--no-password", f"--file={target}"], url)
            dump_seconds = time.monotonic() - started
            record: dict[str, Any] = {
                **versions.as_dict(), "pg_dump": pgtools.run_tool([str(tool), "--version"], url).stdout.strip(),
                "database": conn.info.dbname, "size_bytes": dbstate.database_size(conn),
                "dump_seconds": round(dump_seconds, 3),
                "owner": conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").fetchone()[0],
            }
            if kind == "warehouse":
                record["tables"] = dbstate.table_checksums(conn)
                record["roles"] = dbstate.role_snapshot(conn)
            else:
                record["dagster"] = dbstate.dagster_summary(conn)
    record["file"] = target.name
    record["file_bytes"] = target.stat().st_size
    record["file_sha256"] = sha256_file(target)
    return record


def _lakehouse_section(store: ObjectStore, location: BackupLocation, mode: str) -> dict[str, Any]:
    if mode not in LAKEHOUSE_MODES:
        raise BackupError(f"lakehouse mode {mode!r} is not one of {', '.join(LAKEHOUSE_MODES)}")
    manifest = lake_manifest.build_manifest(store)
    copied = 0
    if mode == "copy":
        present = location.object_keys()
        for entry in lake_manifest.manifest_files(manifest).values():
            key = object_key(entry["sha256"])
            if key in present:
                continue
            data = store.get_bytes(entry["key"])
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise BackupError(f"lakehouse file {store.uri(entry['key'])} changed while it was being backed up; run the backup again")
            location.put_object(entry["sha256"], data)
            present.add(key)
            copied += 1
    return {"mode": mode, "manifest": manifest, "objects_copied": copied}


@dataclass(frozen=True)
class BackupResult:
    backup_id: str
    location: str
    manifest: dict[str, Any]

    @property
    def seconds(self) -> float:
        return float(self.manifest["seconds"])


def create_backup(
    location: BackupLocation,
    warehouse_url: str,
    dagster_url: str | None,
    lakehouse: ObjectStore | None,
    *,
    lakehouse_mode: str = "copy",
    bindir: Path | None = None,
    now: dt.datetime | None = None,
    log: Callable[[str], None] = lambda _message: None,
) -> BackupResult:
    """Take one backup into ``location``; the manifest is written last, so a failed backup is never restorable."""
    started = time.monotonic()
    created = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    backup_id = new_backup_id(created)
    taken = set(location.backup_ids(complete_only=False))
    suffix = 1
    while backup_id in taken:
        backup_id = f"{new_backup_id(created)}-{suffix}"
        suffix += 1
    manifest: dict[str, Any] = {"format": FORMAT, "backup_id": backup_id, "created_at": created.isoformat(), "databases": {}}
    scratch_root = location.local_root
    scratch = Path(tempfile.mkdtemp(prefix=f".{backup_id}.", dir=scratch_root)) if scratch_root else Path(tempfile.mkdtemp(prefix="wealth-backup-"))
    try:
        for kind, url in (("warehouse", warehouse_url), ("dagster", dagster_url)):
            if not url:
                continue
            log(f"dumping {kind} database...")
            target = scratch / f"{kind}.dump"
            manifest["databases"][kind] = dump_database(url, target, kind=kind, bindir=bindir)
            location.put_file(f"{backup_id}/{target.name}", target)
            target.unlink(missing_ok=True)
        if lakehouse is not None:
            log(f"recording the lakehouse ({lakehouse_mode})...")
            manifest["lakehouse"] = _lakehouse_section(lakehouse, location, lakehouse_mode)
        manifest["seconds"] = round(time.monotonic() - started, 3)
        location.write_manifest(backup_id, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return BackupResult(backup_id, location.store.uri(backup_id), manifest)


# ---- retention -------------------------------------------------------------------------------------
def select_retained(backup_ids: list[str], keep_daily: int, keep_weekly: int) -> tuple[list[str], list[str]]:
    """(kept, dropped): the newest backup of each of the last ``keep_daily`` days that have one, and
    the newest of each of the last ``keep_weekly`` ISO weeks that have one (the sets overlap)."""
    if keep_daily < 0 or keep_weekly < 0:
        raise ValueError(f"retention counts must be >= 0 (keep_daily={keep_daily}, keep_weekly={keep_weekly})")
    newest_first = sorted(backup_ids, key=lambda i: (backup_time(i), i), reverse=True)
    kept: set[str] = set()
    days: list[dt.date] = []
    weeks: list[tuple[int, int]] = []
    for backup_id in newest_first:
        when = backup_time(backup_id)
        day, week = when.date(), tuple(when.isocalendar())[:2]
        if day not in days:
            days.append(day)
            if len(days) <= keep_daily:
                kept.add(backup_id)
        if week not in weeks:
            weeks.append(week)
            if len(weeks) <= keep_weekly:
                kept.add(backup_id)
    ordered = sorted(backup_ids, key=lambda i: (backup_time(i), i))
    return [i for i in ordered if i in kept], [i for i in ordered if i not in kept]


def prune(location: BackupLocation, keep_daily: int, keep_weekly: int) -> dict[str, Any]:
    """Apply retention: drop backups outside it, incomplete ones older than the newest complete one,
    and lakehouse objects no remaining backup references."""
    complete = location.backup_ids()
    kept, dropped = select_retained(complete, keep_daily, keep_weekly)
    newest = backup_time(complete[-1]) if complete else None
    incomplete = [i for i in location.backup_ids(complete_only=False) if i not in complete
                  and newest is not None and backup_time(i) < newest]
    for backup_id in dropped + incomplete:
        location.delete_backup(backup_id)
    referenced = set()
    for backup_id in kept:
        section = location.read_manifest(backup_id).get("lakehouse") or {}
        if section.get("mode") == "copy":
            referenced |= {object_key(f["sha256"]) for f in lake_manifest.manifest_files(section["manifest"]).values()}
    orphans = sorted(location.object_keys() - referenced)
    for key in orphans:
        location.delete_object(key)
    return {"kept": kept, "dropped": dropped, "incomplete_removed": incomplete, "objects_removed": len(orphans)}
