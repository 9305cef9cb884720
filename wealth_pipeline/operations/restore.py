"""Restore a backup into fresh (or, with ``force``, replaced) databases and lakehouse, then prove it.

Order: check the backup's files against their checksums; check the target server (same PostgreSQL
major or newer, the exact TimescaleDB version of the backup available and preloaded); refuse a
non-empty target unless ``force`` (then its databases are dropped and recreated); create the roles the
server lacks; ``pg_restore`` each database (TimescaleDB: ``CREATE EXTENSION timescaledb VERSION
<backup's>``, ``timescaledb_pre_restore()``, ``pg_restore`` without parallel jobs,
``timescaledb_post_restore()``, as documented by TimescaleDB); put the lakehouse files back; then
verify every warehouse table's row count and checksum, the Dagster run history and asset state (read
through a real ``DagsterInstance`` on the restored storage), and the lakehouse against its manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from wealth_pipeline.environment import dagster_storage_url, with_database
from wealth_pipeline.lakehouse.store import ObjectStore
from wealth_pipeline.operations import dbstate, pgtools
from wealth_pipeline.operations import manifest as lake_manifest
from wealth_pipeline.operations.location import BackupLocation, sha256_file
from wealth_pipeline.warehouse import timescale


class RestoreRefusedError(RuntimeError):
    """The target is not empty (and ``force`` was not given) or cannot hold this backup."""


class RestoreVerificationError(RuntimeError):
    """The restore finished but the restored content differs from the backup's manifest."""


@dataclass
class RestoreReport:
    backup_id: str
    steps: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return round(sum(self.steps.values()), 3)

    def as_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "seconds": self.seconds, "steps": self.steps, "checks": self.checks,
                "problems": self.problems, "notes": self.notes, "verified": not self.problems}


@contextlib.contextmanager
def _step(report: RestoreReport, name: str, log: Callable[[str], None]) -> Iterator[None]:
    log(f"{name}...")
    started = time.monotonic()
    try:
        yield
    finally:
        report.steps[name] = round(time.monotonic() - started, 3)


def _maintenance_url(url: str) -> str:
    return with_database(url, "postgres")


def _dbname(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def database_contents(url: str) -> list[str]:
    """What makes a target database non-empty: user relations, or a Dagster run table; [] when absent or empty."""
    name = _dbname(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return []
    with psycopg.connect(url) as conn:
        relations = dbstate.checksum_relations(conn)
    return [f"{s}.{n}" for s, n in relations]


def _check_server(url: str, record: dict[str, Any], kind: str) -> pgtools.ServerVersions:
    """The target server can hold this dump: same or newer major, the backup's TimescaleDB version."""
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        versions = pgtools.server_versions(conn)
        if versions.major < record["server_version_num"] // 10000:
            raise RestoreRefusedError(
                f"{kind}: the backup comes from PostgreSQL {record['server_version']} but the target server is "
                f"{versions.server_version}; restore into PostgreSQL {record['server_version_num'] // 10000} or newer")
        wanted = record.get("timescaledb")
        if wanted:
            offered = [v for (v,) in conn.execute(
                "SELECT version FROM pg_available_extension_versions WHERE name = %s ORDER BY 1", (timescale.EXTENSION,)).fetchall()]
            if wanted not in offered:
                raise RestoreRefusedError(
                    f"{kind}: the backup needs TimescaleDB {wanted} (a TimescaleDB dump restores only into the same "
                    f"extension version) but the target server offers {', '.join(offered) or 'no TimescaleDB'}; install "
                    f"TimescaleDB {wanted}, restore, then ALTER EXTENSION timescaledb UPDATE")
            if not timescale.timescale_preloaded(conn):
                raise RestoreRefusedError(
                    f"{kind}: the backup uses TimescaleDB but the target server does not preload it; set "
                    "shared_preload_libraries = 'timescaledb' and restart the server")
    return versions


def _recreate_database(url: str, owner: str | None, drop: bool) -> None:
    name = _dbname(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        if drop:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        elif conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner and conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone():
            statement = statement + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        conn.execute(statement)


def _pg_restore(url: str, dump: Path, record: dict[str, Any], versions: pgtools.ServerVersions, bindir: Path | None,
                report: RestoreReport) -> None:
    tool = pgtools.find_tool("pg_restore", versions.major, bindir)
    with psycopg.connect(url, autocommit=True) as conn:
        known = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    args = [str(tool), "--exit-on-error", "--no-password", f"--dbname={_dbname(url)}"]
    if record.get("owner") and record["owner"] not in known:
        # The backup's owner (a superuser of the old server) does not exist here: objects it owned
        # belong to the restoring role; objects of the warehouse roles keep their owners.
        args.append("--no-owner")
        report.notes.append(f"{record['database']}: owner {record['owner']!r} does not exist on the target; restored with --no-owner")
    ts_version = record.get("timescaledb")
    if ts_version:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} VERSION {}").format(
                sql.Identifier(timescale.EXTENSION), sql.Literal(ts_version)))
            conn.execute("SELECT timescaledb_pre_restore()")
    try:
        pgtools.run_tool([*args, str(dump)], url)
    finally:
        if ts_version:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT timescaledb_post_restore()")


def _restore_lakehouse(location: BackupLocation, section: dict[str, Any], store: ObjectStore, report: RestoreReport) -> None:
    """Put back every file of the backup's lakehouse; remove non-raw files the backup did not have."""
    wanted = lake_manifest.manifest_files(section["manifest"])
    present = set(store.list_keys(""))
    written = 0
    for key, entry in wanted.items():
        data = location.get_object(entry["sha256"])
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise RestoreVerificationError(f"backup object for {key} (sha256 {entry['sha256'][:12]}) is corrupt in {location.store.uri()}")
        if key.startswith("raw/"):
            if store.put_bytes_if_absent(key, data):
                written += 1
        else:
            store.put_bytes(key, data)
            written += 1
    stale = sorted(k for k in present - set(wanted) if not k.startswith("raw/"))
    for key in stale:
        store.delete(key)
    report.checks["lakehouse_files_written"] = written
    if stale:
        report.notes.append(f"lakehouse: removed {len(stale)} file(s) newer than the backup outside raw/ (e.g. {stale[0]})")


def _verify_dagster(url: str, summary: dict[str, Any]) -> list[str]:
    """The restored storage seen through a real DagsterInstance: same runs, same asset keys."""
    import dagster as dg

    problems = []
    with tempfile.TemporaryDirectory(prefix="wealth-restore-home-") as home:
        # The instance file holds the URL (credentials included): mode 0600 in a private temp folder.
        config = Path(home, "dagster.yaml")
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            # JSON is YAML: no YAML writer needed.
            json.dump({"storage": {"postgres": {"postgres_url": dagster_storage_url(url)}}}, handle)
        with dg.DagsterInstance.from_config(home) as instance:
            runs = instance.get_runs_count()
            if runs != summary.get("runs", 0):
                problems.append(f"dagster: {runs} runs restored, the backup had {summary.get('runs', 0)}")
            keys = sorted(k.to_string() for k in instance.get_asset_keys())
            missing = sorted(set(summary.get("asset_keys", [])) - set(keys))
            if missing:
                problems.append(f"dagster: asset keys missing after restore: {missing[:5]}")
    return problems


def restore_backup(
    location: BackupLocation,
    backup_id: str | None,
    warehouse_url: str,
    dagster_url: str | None,
    lakehouse: ObjectStore | None,
    *,
    force: bool = False,
    bindir: Path | None = None,
    log: Callable[[str], None] = lambda _message: None,
) -> RestoreReport:
    """Restore one backup (default: the latest complete one) and verify it; raises when it does not verify."""
    backup_id = location.resolve(backup_id)
    manifest = location.read_manifest(backup_id)
    report = RestoreReport(backup_id)
    targets = {"warehouse": warehouse_url, "dagster": dagster_url}
    databases = {kind: rec for kind, rec in manifest["databases"].items() if targets.get(kind)}
    section = manifest.get("lakehouse") or {}
    copy_lake = lakehouse is not None and section.get("mode") == "copy"

    with tempfile.TemporaryDirectory(prefix="wealth-restore-") as scratch_dir:
        scratch = Path(scratch_dir)
        dumps: dict[str, Path] = {}
        with _step(report, "fetch and check backup files", log):
            for kind, record in databases.items():
                path = location.file_path(f"{backup_id}/{record['file']}", scratch)
                if sha256_file(path) != record["file_sha256"]:
                    raise RestoreVerificationError(f"{location.store.uri(backup_id + '/' + record['file'])}: checksum differs from the manifest (corrupt backup)")
                dumps[kind] = path
        with _step(report, "check target", log):
            versions = {kind: _check_server(targets[kind], record, kind) for kind, record in databases.items()}
            occupied = {kind: database_contents(targets[kind]) for kind in databases}
            occupied = {k: v for k, v in occupied.items() if v}
            lake_keys = lakehouse.list_keys("") if copy_lake and lakehouse is not None else []
            if (occupied or lake_keys) and not force:
                what = [f"{kind} database {_dbname(targets[kind])} holds {len(v)} tables (e.g. {v[0]})" for kind, v in occupied.items()]
                if lake_keys:
                    what.append(f"lakehouse {lakehouse.uri()} holds {len(lake_keys)} files")
                raise RestoreRefusedError(f"refusing to restore over a non-empty target: {'; '.join(what)}; pass --force to replace it")
        if "warehouse" in databases:
            with _step(report, "roles", log), psycopg.connect(_maintenance_url(warehouse_url), autocommit=True) as conn:
                report.checks["roles"] = dbstate.restore_roles(conn, databases["warehouse"].get("roles", []))
        for kind, record in databases.items():
            with _step(report, f"restore {kind} database", log):
                _recreate_database(targets[kind], record.get("owner"), drop=force)
                _pg_restore(targets[kind], dumps[kind], record, versions[kind], bindir, report)
    if copy_lake and lakehouse is not None:
        with _step(report, "restore lakehouse", log):
            _restore_lakehouse(location, section, lakehouse, report)

    with _step(report, "verify", log):
        if "warehouse" in databases:
            with psycopg.connect(warehouse_url) as conn:
                actual = dbstate.table_checksums(conn)
            expected = databases["warehouse"]["tables"]
            bad = sorted(t for t in expected if actual.get(t) != expected[t])
            extra = sorted(set(actual) - set(expected))
            report.checks["warehouse_tables"] = {"expected": len(expected), "matching": len(expected) - len(bad)}
            for table in bad[:10]:
                report.problems.append(f"warehouse {table}: restored {actual.get(table)} != backup {expected[table]}")
            if extra:
                report.problems.append(f"warehouse: tables not in the backup after restore: {extra[:5]}")
        if "dagster" in databases:
            expected = databases["dagster"].get("dagster", {})
            with psycopg.connect(targets["dagster"]) as conn:
                actual = dbstate.dagster_summary(conn)
            for key in ("runs", "runs_by_status", "run_ids_sha256", "table_rows"):
                if actual.get(key) != expected.get(key):
                    report.problems.append(f"dagster {key}: restored {actual.get(key)} != backup {expected.get(key)}")
            report.problems.extend(_verify_dagster(targets["dagster"], expected))
            report.checks["dagster_runs"] = actual.get("runs", 0)
        if lakehouse is not None and section:
            diff = lake_manifest.compare(section["manifest"], lake_manifest.build_manifest(lakehouse))
            report.checks["lakehouse"] = diff.summary()
            if not diff.matches:
                report.problems.append(f"lakehouse {lakehouse.uri()} differs from the backup's manifest: {diff.summary()}")
    if report.problems:
        raise RestoreVerificationError(f"restore of {backup_id} did not verify: " + " | ".join(report.problems))
    return report
