"""Backup, destroy, restore, verify, run the next session: on plain PostgreSQL and on TimescaleDB.

The state is a few sessions of the market and analytics graph (8 synthetic securities) run with a
PostgreSQL-backed Dagster instance, so the run history lives in a real ``dagster`` database. Every
procedure goes through the ``wealth-pipeline`` command the runbook (docs/operations.md) gives.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from deltalake import DeltaTable
from psycopg import sql

from wealth_pipeline import cli
from wealth_pipeline.cli import materialize_range
from wealth_pipeline.definitions import build_definitions
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.environment import REPO_ROOT, dagster_storage_url, with_database
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.operations.location import BackupLocation, object_key
from wealth_pipeline.warehouse import migrate

pytestmark = pytest.mark.integration

SELECTION = "group:ingest or group:processed or group:analytics"
FIRST, LAST, NEXT = "2024-07-01", "2024-07-05", "2024-07-08"
# Tables compared row by row (an oracle independent of the restore's own checksums).
COMPARED = {
    "market.bars_daily": "symbol, session_date",
    "analytics.indicators_daily": "symbol, session_date",
    "ref.securities": "symbol",
    "ops.loads": "load_id",
}


@dataclass
class State:
    flavour: str
    warehouse_url: str
    dagster_url: str
    lake: Path
    backups: Path
    home: Path

    def definitions(self) -> dg.Definitions:
        return build_definitions({
            "warehouse": WarehouseResource(url=self.warehouse_url),
            "lakehouse": LakehouseResource(uri=str(self.lake)),
            "market_data": MarketDataResource(synthetic_universe=8),
        })

    def run(self, start: str, end: str) -> list[dict]:
        with dg.DagsterInstance.get() as instance:
            return materialize_range(start, end, SELECTION, progress=False, definitions=self.definitions(), instance=instance)["runs"]

    def rows(self, table: str) -> list[tuple]:
        schema, name = table.split(".")
        with psycopg.connect(self.warehouse_url) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            return conn.execute(sql.SQL("SELECT * FROM {}.{} ORDER BY " + COMPARED[table]).format(
                sql.Identifier(schema), sql.Identifier(name))).fetchall()


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out[out.index("{"):]) if "{" in out else {}


def _drop(url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def state(flavoured_db: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[State]:
    flavour, warehouse_url = flavoured_db
    migrate.upgrade(warehouse_url)
    dagster_url = with_database(warehouse_url, f"d_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(with_database(warehouse_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(psycopg.conninfo.conninfo_to_dict(dagster_url)["dbname"])))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    s = State(flavour, warehouse_url, dagster_url, tmp_path / "lake", tmp_path / "backups", home)
    for name, value in {
        "WEALTH_HOME": str(tmp_path / "wealth"), "DAGSTER_HOME": str(home), "WEALTH_DATABASE_URL": warehouse_url,
        "WEALTH_DAGSTER_DATABASE_URL": dagster_storage_url(dagster_url), "WEALTH_LAKEHOUSE_URI": str(s.lake),
        "WEALTH_BACKUP_URI": str(s.backups), "WEALTH_SYNTHETIC_UNIVERSE": "8",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield s
    finally:
        _drop(dagster_url)


def test_backup_destroy_restore_verify_and_run_the_next_session(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert all(r["success"] for r in state.run(FIRST, LAST))
    before = {t: state.rows(t) for t in COMPARED}
    assert len(before["market.bars_daily"]) > 0 and len(before["analytics.indicators_daily"]) > 0
    with dg.DagsterInstance.get() as instance:
        runs_before = {r.run_id for r in instance.get_runs()}
    with psycopg.connect(state.warehouse_url) as conn:
        timescale = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 1
        hypertables = conn.execute("SELECT count(*) FROM timescaledb_information.hypertables").fetchone()[0] if timescale else 0
    assert timescale == (state.flavour == "timescale") and (hypertables > 0) == timescale
    lake_files = {p.relative_to(state.lake).as_posix(): p.read_bytes() for p in state.lake.rglob("*") if p.is_file()}

    # Backup (the runbook's command).
    code, backup = _cli_json(capsys, "backup", "--to", str(state.backups), "--json")
    assert code == 0
    assert backup["warehouse_tables"] >= 20 and backup["dagster_runs"] == len(runs_before)
    assert backup["lakehouse"] == {"mode": "copy", "files": len(lake_files), "objects_copied": len({*map(_sha, lake_files.values())})}
    manifest = BackupLocation(str(state.backups)).read_manifest(backup["backup_id"])
    warehouse = manifest["databases"]["warehouse"]
    assert warehouse["timescaledb"] == ("2.28.3" if state.flavour == "timescale" else None)
    assert warehouse["server_version"].startswith("15.") and "pg_dump (PostgreSQL) 15" in warehouse["pg_dump"]
    assert warehouse["tables"]["market.bars_daily"]["rows"] == len(before["market.bars_daily"])
    assert {r["name"] for r in warehouse["roles"]} >= {"wealth_owner", "wealth_loader", "wealth_bi"}
    datasets = manifest["lakehouse"]["manifest"]["tiers"]["processed"]["datasets"]
    # processed/bars is a Delta table: the manifest records the version delta-rs itself reports.
    assert datasets["bars"]["format"] == "delta"
    assert datasets["bars"]["version"] == DeltaTable(str(state.lake / "processed" / "bars")).version()
    raw = manifest["lakehouse"]["manifest"]["tiers"]["raw"]["datasets"]
    assert all(d["format"] == "parquet" and d["version"] is None for d in raw.values())
    assert {f["key"]: f["sha256"] for f in datasets["bars"]["files"]} == {
        k: _sha(v) for k, v in lake_files.items() if k.startswith("processed/bars/")}

    # A live (non-empty) target is refused without --force, and left untouched.
    code = cli.main(["restore", str(state.backups)])
    assert code == 2
    assert "refusing to restore over a non-empty target" in capsys.readouterr().err
    assert state.rows("market.bars_daily") == before["market.bars_daily"]

    # Lose everything: both databases and the lakehouse folder.
    _drop(state.warehouse_url)
    _drop(state.dagster_url)
    shutil.rmtree(state.lake)

    started = time.monotonic()
    code, report = _cli_json(capsys, "restore", str(state.backups / backup["backup_id"]), "--json")
    rto = time.monotonic() - started
    assert code == 0, report
    assert report["verified"] and report["problems"] == []
    assert report["checks"]["warehouse_tables"]["matching"] == report["checks"]["warehouse_tables"]["expected"] == backup["warehouse_tables"]
    assert report["checks"]["lakehouse"] == "identical"
    with capsys.disabled():
        print(f"\nRTO ({state.flavour}, {sum(len(v) for v in before.values())} compared rows): {rto:.1f}s; steps {report['steps']}")

    # Independent oracle: the rows themselves, the lakehouse bytes, the run history through Dagster.
    assert {t: state.rows(t) for t in COMPARED} == before
    assert {p.relative_to(state.lake).as_posix(): p.read_bytes() for p in state.lake.rglob("*") if p.is_file()} == lake_files
    with dg.DagsterInstance.get() as instance:
        assert {r.run_id for r in instance.get_runs()} == runs_before
        assert instance.get_materialized_partitions(dg.AssetKey("bars")) >= {FIRST, LAST}
    with psycopg.connect(state.warehouse_url) as conn:
        if state.flavour == "timescale":
            assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables").fetchone()[0] == hypertables
            assert conn.execute("SELECT current_setting('timescaledb.restoring')").fetchone()[0] == "off"
        # Row-level security survived the restore (the BI role sees no portfolio rows without a mapping).
        assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'portfolio.transactions'::regclass").fetchone()[0]

    # The restored system carries on: the next session runs, with warm-up history from the restored lakehouse.
    assert all(r["success"] for r in state.run(NEXT, NEXT))
    with psycopg.connect(state.warehouse_url) as conn:
        (bars,) = conn.execute("SELECT count(*) FROM market.bars_daily WHERE session_date = %s", (NEXT,)).fetchone()
        (sma,) = conn.execute("SELECT count(*) FROM analytics.indicators_daily WHERE session_date = %s AND return_1d IS NOT NULL",
                              (NEXT,)).fetchone()
    assert bars == 8 and sma == 8, "each security's return on the next session uses the restored previous session"
    with dg.DagsterInstance.get() as instance:
        assert len(runs_before - {r.run_id for r in instance.get_runs()}) == 0
        assert NEXT in instance.get_materialized_partitions(dg.AssetKey("indicators"))

    # --force replaces a non-empty target, back to the backup's point in time.
    code, again = _cli_json(capsys, "restore", str(state.backups), "--force", "--json")
    assert code == 0 and again["verified"]
    assert {t: state.rows(t) for t in COMPARED} == before


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_corrupt_backup_object_is_refused(pg_url: str, tmp_path: Path) -> None:
    """A bit flip in a lakehouse object or a dump fails the restore with the file named, before anything is replaced."""
    from wealth_pipeline.lakehouse.store import open_store
    from wealth_pipeline.operations.backup import create_backup
    from wealth_pipeline.operations.restore import RestoreVerificationError, restore_backup

    migrate.upgrade(pg_url)
    lake = open_store(str(tmp_path / "lake"))
    lake.put_bytes_if_absent("raw/bars/date=2024-07-01/v0001-abc.parquet", b"delivered bytes")
    location = BackupLocation(str(tmp_path / "backups"))
    result = create_backup(location, pg_url, None, lake)
    blob = tmp_path / "backups" / object_key(_sha(b"delivered bytes"))
    blob.write_bytes(b"delivered bytez")
    target = with_database(pg_url, f"r_{uuid.uuid4().hex[:10]}")
    try:
        with pytest.raises(RestoreVerificationError, match="is corrupt"):
            restore_backup(location, None, target, None, open_store(str(tmp_path / "restored")))
        dump = tmp_path / "backups" / result.backup_id / "warehouse.dump"
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        with pytest.raises(RestoreVerificationError, match=r"warehouse\.dump: checksum differs"):
            restore_backup(location, result.backup_id, target, None, None)
    finally:
        _drop(target)
