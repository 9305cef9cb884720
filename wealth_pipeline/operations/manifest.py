"""The lakehouse manifest: every dataset's files with sizes and SHA-256 checksums.

A backup records it; a restore (or an audit) compares the lakehouse against it. Datasets are the
first key segment under each tier (``processed/bars/...`` -> ``bars``). A dataset of plain
parquet files (the raw tier) has ``version: null``; a Delta Lake table (the processed and models
tiers) has ``format: delta`` and the table version the backup saw (its newest ``_delta_log``
commit), and the file list stays the way to check the bytes. Restoring every file listed, and
removing files written since, puts the table back at exactly that version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wealth_pipeline.lakehouse import delta
from wealth_pipeline.lakehouse.store import TIERS, LocalObjectStore, ObjectStore, S3ObjectStore

MANIFEST_FORMAT = 1
_BATCH = 64


@dataclass(frozen=True)
class ObjectStat:
    """Size and last modification of one object (from the file system or the S3 listing)."""

    key: str
    size: int
    modified: dt.datetime


def object_stats(store: ObjectStore, prefix: str = "") -> list[ObjectStat]:
    """Every object under ``prefix`` with its size and modification time, without reading its bytes."""
    if isinstance(store, LocalObjectStore):
        stats = []
        for key in store.list_keys(prefix):
            st = os.stat(store.root.joinpath(*key.split("/")))
            stats.append(ObjectStat(key, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)))
        return stats
    if isinstance(store, S3ObjectStore):
        strip = len(store.prefix) + 1 if store.prefix else 0
        full = store._full(prefix) if prefix else (f"{store.prefix}/" if store.prefix else "")
        stats = []
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=full):
            for item in page.get("Contents", ()):
                modified = item["LastModified"]
                stats.append(ObjectStat(item["Key"][strip:], int(item["Size"]), modified.astimezone(dt.UTC)))
        return sorted(stats, key=lambda s: s.key)
    # Any other backend: read the bytes (correct, slower).
    now = dt.datetime.now(dt.UTC)
    return [ObjectStat(k, len(store.get_bytes(k)), now) for k in store.list_keys(prefix)]


def _checksums(store: ObjectStore, keys: list[str]) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(keys), _BATCH):
        batch = keys[start:start + _BATCH]
        for key, data in zip(batch, store.get_many(batch), strict=True):
            found[key] = (len(data), hashlib.sha256(data).hexdigest())
    return found


def dataset_of(key: str) -> tuple[str, str]:
    """(tier, dataset) of a lakehouse key: ``processed/bars/date=.../data.parquet`` -> (processed, bars)."""
    parts = key.split("/")
    return parts[0], parts[1] if len(parts) > 2 else "_root"


_COMMIT = re.compile(r"/_delta_log/(\d{20})\.json$")


def delta_version(keys: Iterable[str]) -> int | None:
    """The table version a Delta table's files describe: its newest commit ``_delta_log/<version:020d>.json``
    (the Delta protocol numbers commits 0, 1, 2...); None when the keys hold no commit (plain parquet)."""
    versions = [int(m.group(1)) for m in map(_COMMIT.search, keys) if m]
    return max(versions) if versions else None


def build_manifest(store: ObjectStore, tiers: Iterable[str] = TIERS) -> dict[str, Any]:
    """Each tier's datasets with their files (key, size, sha256); a Delta table's entry has
    ``format: delta`` and the table ``version`` its files hold, plain parquet datasets ``version: null``."""
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "uri": store.uri(), "tiers": {}}
    files = bytes_total = 0
    for tier in tiers:
        keys = store.list_keys(f"{tier}/")
        sums = _checksums(store, keys)
        # A nested Delta table (quarantine/vendor/bars, models/forecaster/<id>/oos_predictions) is its
        # own entry with its own version, not merged into its first path segment's.
        roots = sorted(delta.tables_under(keys), key=len, reverse=True)
        datasets: dict[str, dict[str, Any]] = {}
        for key in keys:
            root = next((r for r in roots if key.startswith(f"{r}/")), None)
            dataset = root.split("/", 1)[1] if root else dataset_of(key)[1]
            entry = datasets.setdefault(dataset, {"format": "parquet", "version": None, "files": [], "bytes": 0})
            size, digest = sums[key]
            entry["files"].append({"key": key, "size": size, "sha256": digest})
            entry["bytes"] += size
            files += 1
            bytes_total += size
        for entry in datasets.values():
            version = delta_version(f["key"] for f in entry["files"])
            if version is not None:
                entry["format"], entry["version"] = "delta", version
        manifest["tiers"][tier] = {"datasets": datasets}
    manifest["file_count"] = files
    manifest["bytes"] = bytes_total
    return manifest


def manifest_files(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """key -> {size, sha256} over every tier and dataset of a manifest."""
    return {f["key"]: f for tier in manifest["tiers"].values() for ds in tier["datasets"].values() for f in ds["files"]}


@dataclass(frozen=True)
class ManifestDiff:
    """How a lakehouse differs from a manifest: missing or changed files fail; extra raw files do not."""

    missing: list[str]
    changed: list[str]
    extra: list[str]

    @property
    def matches(self) -> bool:
        return not self.missing and not self.changed and not [k for k in self.extra if not k.startswith("raw/")]

    def summary(self, limit: int = 5) -> str:
        parts = []
        for name, keys in (("missing", self.missing), ("changed", self.changed), ("extra", self.extra)):
            if keys:
                parts.append(f"{len(keys)} {name} (e.g. {', '.join(keys[:limit])})")
        return "; ".join(parts) or "identical"


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> ManifestDiff:
    """Compare two manifests file by file (size and checksum).

    Extra raw files are deliveries after the backup (the raw tier only grows), so they do not make
    the lakehouse differ from the backup's point in time; extra files elsewhere do.
    """
    want, have = manifest_files(expected), manifest_files(actual)
    missing = sorted(k for k in want if k not in have)
    changed = sorted(k for k in want if k in have and (have[k]["sha256"], have[k]["size"]) != (want[k]["sha256"], want[k]["size"]))
    extra = sorted(k for k in have if k not in want)
    return ManifestDiff(missing, changed, extra)


def local_path(store: ObjectStore) -> Path | None:
    """The folder of a local store (None for S3)."""
    return store.root if isinstance(store, LocalObjectStore) else None
