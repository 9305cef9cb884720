"""Where backups live: a local folder or ``s3://bucket/prefix``.

Layout::

    <id>/manifest.json      written last: a backup without it is incomplete and never restored
    <id>/warehouse.dump     pg_dump custom format (compressed)
    <id>/dagster.dump
    objects/<sha[:2]>/<sha> lakehouse files, content-addressed and shared by every backup

Backup ids are UTC timestamps (``20240702T231500Z``), so they sort in time order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from wealth_pipeline.lakehouse.store import LocalObjectStore, ObjectStore, S3ObjectStore, open_store

BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")
MANIFEST = "manifest.json"


class BackupNotFoundError(LookupError):
    """No (complete) backup at the location, or not the one asked for."""


def backup_time(backup_id: str) -> dt.datetime:
    """The UTC time a backup id names."""
    return dt.datetime.strptime(backup_id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file (dumps are read in blocks, never whole into memory)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def new_backup_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def object_key(sha256: str) -> str:
    return f"objects/{sha256[:2]}/{sha256}"


class BackupLocation:
    """Backups under one URI; large dump files are copied as files, small objects through the store."""

    def __init__(self, uri: str, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1") -> None:
        self.uri = uri
        self.store: ObjectStore = open_store(uri, s3_endpoint_url, s3_region)
        if isinstance(self.store, LocalObjectStore):
            self.store.root.mkdir(parents=True, exist_ok=True)

    @property
    def local_root(self) -> Path | None:
        return self.store.root if isinstance(self.store, LocalObjectStore) else None

    def __repr__(self) -> str:
        return f"BackupLocation({self.store.uri()!r})"

    # ---- backups -------------------------------------------------------------------------------
    def backup_ids(self, complete_only: bool = True) -> list[str]:
        """Ids of the backups here, oldest first (only those with a manifest unless told otherwise)."""
        ids = set()
        for key in self.store.list_keys(""):
            head, _, rest = key.partition("/")
            if BACKUP_ID.match(head) and (rest == MANIFEST or not complete_only):
                ids.add(head)
        return sorted(ids, key=lambda i: (backup_time(i), i))

    def latest(self) -> str:
        ids = self.backup_ids()
        if not ids:
            raise BackupNotFoundError(f"no complete backup in {self.store.uri()} (a backup is complete once its {MANIFEST} exists)")
        return ids[-1]

    def resolve(self, backup_id: str | None) -> str:
        """``None``/``latest`` -> the newest complete backup; an id must exist and be complete."""
        if backup_id in (None, "", "latest"):
            return self.latest()
        if not BACKUP_ID.match(backup_id):
            raise BackupNotFoundError(f"backup id {backup_id!r} is not of the form YYYYMMDDTHHMMSSZ")
        if not self.store.exists(f"{backup_id}/{MANIFEST}"):
            raise BackupNotFoundError(f"no complete backup {backup_id} in {self.store.uri()} (available: {', '.join(self.backup_ids()) or 'none'})")
        return backup_id

    def read_manifest(self, backup_id: str) -> dict[str, Any]:
        return json.loads(self.store.get_bytes(f"{backup_id}/{MANIFEST}"))

    def write_manifest(self, backup_id: str, manifest: dict[str, Any]) -> None:
        self.store.put_bytes(f"{backup_id}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())

    def put_file(self, key: str, path: Path) -> None:
        """Move a local file to ``key`` (S3: multipart upload, never whole in memory)."""
        if isinstance(self.store, S3ObjectStore):
            self.store.client.upload_file(str(path), self.store.bucket, self.store._full(key))
            return
        root = self.local_root
        assert root is not None
        target = root.joinpath(*key.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.resolve() == target.resolve():
            return
        try:
            os.replace(path, target)  # same file system (the scratch folder is inside the location)
        except OSError:
            tmp = target.with_name(f".{target.name}.partial")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)

    def file_path(self, key: str, scratch: Path) -> Path:
        """A local path holding ``key``: the file itself for a local location, a download otherwise."""
        root = self.local_root
        if root is not None:
            path = root.joinpath(*key.split("/"))
            if not path.is_file():
                raise BackupNotFoundError(f"{path} is missing")
            return path
        assert isinstance(self.store, S3ObjectStore)
        target = scratch / key.replace("/", "_")
        self.store.client.download_file(self.store.bucket, self.store._full(key), str(target))
        return target

    def delete_backup(self, backup_id: str) -> int:
        """Remove every object of one backup (the manifest first, so it is never half-restorable)."""
        keys = self.store.list_keys(f"{backup_id}/")
        keys.sort(key=lambda k: k != f"{backup_id}/{MANIFEST}")
        for key in keys:
            self.store.delete(key)
        root = self.local_root
        if root is not None:
            shutil.rmtree(root / backup_id, ignore_errors=True)
        return len(keys)

    # ---- lakehouse objects ---------------------------------------------------------------------
    def object_keys(self) -> set[str]:
        return set(self.store.list_keys("objects/"))

    def put_object(self, sha256: str, data: bytes) -> None:
        self.store.put_bytes(object_key(sha256), data)

    def get_object(self, sha256: str) -> bytes:
        return self.store.get_bytes(object_key(sha256))

    def delete_object(self, key: str) -> None:
        self.store.delete(key)
