"""Where models live: versioned snapshot reads of the processed tier, the models tier, `models.model_registry`.

Models tier layout (Lakehouse tier ``models``)::

    models/forecaster/{model_id}/booster.ubj              the XGBoost booster (UBJ)
    models/forecaster/{model_id}/manifest.json            what it was trained on and how well it did
    models/forecaster/{model_id}/oos_predictions/         walk-forward out-of-sample scores (Delta table)
    models/predictions/                                   daily scores, the predictions asset (Delta table)

A model's inputs are read at one pinned Delta version per table; the manifest records each table's
URI and version (``data_snapshot.<dataset>.table_version``), so ``snapshot_from_manifest`` reads the
exact rows again after any number of newer commits (inside the vacuum retention, see
``defs/maintenance``).
"""

import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from wealth_pipeline.core import modeling
from wealth_pipeline.lakehouse.store import Lakehouse

if TYPE_CHECKING:  # imported where boosters are used (core.modeling), not at definitions load
    import xgboost as xgb

MODEL_DATASET = "forecaster"
BOOSTER_FILE = f"booster.{modeling.BOOSTER_FORMAT}"
MANIFEST_FILE = "manifest.json"
OOS_FILE = "oos_predictions.parquet"  # the name of the former parquet file; now the table below
OOS_TABLE = "oos_predictions"
REGISTRY_TABLE = "models.model_registry"


@dataclass
class SnapshotRead:
    """A dataset window read at one table version, with a checksum of every partition's rows."""

    frame: pl.DataFrame
    files: list[dict[str, Any]]
    version: int | None = None
    table_uri: str | None = None
    window: tuple[str, str] | None = None

    def summary(self, tier: str, dataset: str) -> dict[str, Any]:
        digest = hashlib.sha256("".join(f"{f['partition']}:{f['sha256']};" for f in self.files).encode()).hexdigest()
        return {
            "uri": f"{tier}/{dataset}",
            "table_uri": self.table_uri,
            "table_version": self.version,
            "window": list(self.window) if self.window else None,
            "partitions": len(self.files),
            "first_partition": self.files[0]["partition"] if self.files else None,
            "last_partition": self.files[-1]["partition"] if self.files else None,
            "rows": self.frame.height,
            "sha256": digest,
        }


def partition_digest(frame: pl.DataFrame) -> str:
    """sha256 of a partition's rows: its uncompressed Arrow IPC stream (same rows and types, same digest).

    The rows are gathered into fresh arrays first: a day sliced out of a window read keeps the
    window's validity-bitmap offset, and Arrow IPC writes such a bitmap differently from the same
    rows read alone (a model's manifest recorded digests a one-day read could not reproduce).
    """
    fresh = frame.gather(pl.int_range(frame.height, eager=True)) if frame.height else frame
    return hashlib.sha256(fresh.write_ipc_stream(None, compression="uncompressed").getvalue()).hexdigest()


def read_snapshot(lake: Lakehouse, tier: str, dataset: str, start: dt.date, end: dt.date,
                  *, as_of: int | None = None) -> SnapshotRead:
    """``[start, end]`` read at one version (the current one unless ``as_of``), with per-partition checksums.

    The version is fixed first and the rows read at it, so a commit landing meanwhile cannot mix
    into the snapshot.
    """
    version = lake.version(tier, dataset, as_of)
    frame, days = lake.read_with_partitions(tier, dataset, start, end, as_of=version)
    files = []
    if frame.height:
        for day, part in zip(*_split_by_day(frame, days), strict=True):
            files.append({"partition": day.isoformat(), "rows": part.height, "sha256": partition_digest(part)})
    return SnapshotRead(frame, files, version, lake.table_uri(tier, dataset) if lake.is_table_tier(tier) else None,
                        (start.isoformat(), end.isoformat()))


def _split_by_day(frame: pl.DataFrame, days: pl.Series) -> tuple[list[dt.date], list[pl.DataFrame]]:
    """Consecutive runs of one day (rows come in date order) as (days, frames)."""
    change = days.ne_missing(days.shift(1)).fill_null(True)
    starts = [*change.arg_true().to_list(), frame.height]
    return [days[i] for i in starts[:-1]], [frame.slice(a, b - a) for a, b in itertools.pairwise(starts)]


def snapshot_from_manifest(lake: Lakehouse, manifest: dict[str, Any], tier: str = "processed") -> dict[str, SnapshotRead]:
    """Every input of a model read again exactly as it was trained on: same windows, same table versions.

    Raises ``ValueError`` naming the dataset when the manifest predates table versions, and
    ``LakehouseError`` when the checksums of the re-read rows differ from the recorded ones.
    """
    reads = {}
    for name, entry in manifest["data_snapshot"].items():
        if entry.get("table_version") is None or not entry.get("window"):
            raise ValueError(f"manifest of {manifest.get('model_id')}: input {name!r} records no table version "
                             "and window (trained before the processed tier became Delta tables)")
        start, end = (dt.date.fromisoformat(d) for d in entry["window"])
        read = read_snapshot(lake, tier, name, start, end, as_of=int(entry["table_version"]))
        if read.summary(tier, name)["sha256"] != entry["sha256"]:
            from wealth_pipeline.lakehouse.store import LakehouseError

            raise LakehouseError(f"{read.table_uri} version {entry['table_version']}: rows of {start}..{end} differ "
                                 f"from the manifest's checksum {entry['sha256']}")
        reads[name] = read
    return reads


def snapshot_digest(snapshot: dict[str, Any]) -> str:
    """One checksum over the per-dataset checksums of a data snapshot."""
    return hashlib.sha256(json.dumps({k: v["sha256"] for k, v in sorted(snapshot.items())}).encode()).hexdigest()


def model_key(lake: Lakehouse, model_id: str, filename: str) -> str:
    return lake.dataset_key("models", f"{MODEL_DATASET}/{model_id}", filename)


def save_model(lake: Lakehouse, model_id: str, booster: "xgb.Booster", manifest: dict[str, Any],
               oos: pl.DataFrame) -> tuple[str, str]:
    """Write booster, out-of-sample scores and manifest (last) to the models tier; return their URIs."""
    booster_key = model_key(lake, model_id, BOOSTER_FILE)
    lake.store.put_bytes(booster_key, modeling.booster_bytes(booster))
    lake.write_dataset("models", f"{MODEL_DATASET}/{model_id}/{OOS_TABLE}", oos)
    manifest_uri = lake.put_json("models", f"{MODEL_DATASET}/{model_id}", MANIFEST_FILE, manifest)
    return lake.uri(booster_key), manifest_uri


def load_model(lake: Lakehouse, model_id: str) -> tuple["xgb.Booster", dict[str, Any]]:
    """The booster and manifest of ``model_id`` from the models tier."""
    booster = modeling.load_booster(lake.store.get_bytes(model_key(lake, model_id, BOOSTER_FILE)))
    manifest = lake.get_json("models", f"{MODEL_DATASET}/{model_id}", MANIFEST_FILE)
    return booster, manifest


def register(url: str, row: dict[str, Any], run_id: str) -> None:
    """Insert or update one registry row and its audit row in ``ops.loads``, in one transaction."""
    jsonb = {"params", "metrics", "data_snapshot"}
    columns = list(row)
    values = [Jsonb(row[c]) if c in jsonb else row[c] for c in columns]
    checksum = hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()
    from psycopg import sql

    statement = sql.SQL("INSERT INTO models.model_registry ({cols}) VALUES ({vals}) "
                        "ON CONFLICT (model_id) DO UPDATE SET {updates}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        updates=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns if c != "model_id"),
    )
    with psycopg.connect(url) as conn:
        conn.execute(statement, values)
        conn.execute(
            "INSERT INTO ops.loads (asset, partition_key, table_name, window_start, window_end, rows, checksum, run_id) "
            "VALUES (%s, %s, %s, %s, %s, 1, %s, %s)",
            ("model", row["model_id"], REGISTRY_TABLE, row["train_start"], row["train_end"], checksum, run_id),
        )


def registered_models(url: str, before: dt.date) -> pl.DataFrame:
    """``model_id, train_end, trained_at`` of every model whose data ends strictly before ``before``."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT model_id, train_end, trained_at FROM models.model_registry WHERE train_end < %s "
            "ORDER BY train_end, trained_at, model_id", (before,)).fetchall()
    return pl.DataFrame(rows, schema={"model_id": pl.Utf8, "train_end": pl.Date,
                                      "trained_at": pl.Datetime("us", "UTC")}, orient="row")


def model_for_sessions(models: pl.DataFrame, sessions: list[dt.date]) -> dict[dt.date, str | None]:
    """For each session, the latest model (by train_end, then trained_at) whose data ends strictly before it."""
    ordered = models.sort(["train_end", "trained_at", "model_id"]).rows()
    chosen: dict[dt.date, str | None] = {}
    for session in sessions:
        usable = [r for r in ordered if r[1] < session]
        chosen[session] = usable[-1][0] if usable else None
    return chosen
