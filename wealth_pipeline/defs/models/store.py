"""Where models live: snapshot reads of the processed tier, the models tier, and `models.model_registry`.

Models tier layout (Lakehouse tier ``models``)::

    models/forecaster/{model_id}/booster.ubj            the XGBoost booster (UBJ)
    models/forecaster/{model_id}/manifest.json          what it was trained on and how well it did
    models/forecaster/{model_id}/oos_predictions.parquet  walk-forward out-of-sample scores
    models/predictions/date=YYYY-MM-DD/data.parquet     daily scores (the predictions asset)
"""

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from wealth_pipeline.core import modeling
from wealth_pipeline.lakehouse.store import Lakehouse, parquet_to_frame

if TYPE_CHECKING:  # imported where boosters are used (core.modeling), not at definitions load
    import xgboost as xgb

MODEL_DATASET = "forecaster"
BOOSTER_FILE = f"booster.{modeling.BOOSTER_FORMAT}"
MANIFEST_FILE = "manifest.json"
OOS_FILE = "oos_predictions.parquet"
REGISTRY_TABLE = "models.model_registry"


@dataclass
class SnapshotRead:
    """A dataset window read from the lakehouse together with the checksum of every file read."""

    frame: pl.DataFrame
    files: list[dict[str, Any]]

    def summary(self, tier: str, dataset: str) -> dict[str, Any]:
        digest = hashlib.sha256("".join(f"{f['partition']}:{f['sha256']};" for f in self.files).encode()).hexdigest()
        return {
            "uri": f"{tier}/{dataset}",
            "partitions": len(self.files),
            "first_partition": self.files[0]["partition"] if self.files else None,
            "last_partition": self.files[-1]["partition"] if self.files else None,
            "rows": self.frame.height,
            "sha256": digest,
        }


def read_snapshot(lake: Lakehouse, tier: str, dataset: str, start: dt.date, end: dt.date) -> SnapshotRead:
    """The partitions of ``[start, end]`` as one frame, with partition key and sha256 of each file's bytes."""
    keys = lake.partition_files(tier, dataset, start, end)
    blobs = lake.store.get_many(keys)
    frames = [parquet_to_frame(blob, source=lake.uri(key)) for key, blob in zip(keys, blobs, strict=True)]
    files = [
        {"partition": key.split("/date=", 1)[1].split("/", 1)[0], "file": key.rsplit("/", 1)[1],
         "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        for key, blob in zip(keys, blobs, strict=True)
    ]
    frame = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    return SnapshotRead(frame, files)


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
    lake.write_dataset("models", f"{MODEL_DATASET}/{model_id}", oos, filename=OOS_FILE)
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
