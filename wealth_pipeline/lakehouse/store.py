"""Lakehouse storage: one object-store interface, a local-folder and an S3 backend, tables and files.

Layout under one lakehouse URI (a local folder, ``file://`` URI or ``s3://bucket/prefix``)::

    processed/{dataset}/_delta_log/...              Delta Lake table per dataset (``lakehouse.delta``)
    processed/{dataset}/lake_year=YYYY/part-*.parquet   its data files, partitioned by year
    models/{dataset}/...                            Delta tables too (predictions, out-of-sample scores)
    models/forecaster/{model_id}/manifest.json      plain objects (boosters, JSON manifests)
    raw/{dataset}/date=YYYY-MM-DD/{sha256}.parquet  immutable, content-addressed vendor data
    quarantine/{dataset}/_delta_log/...             Delta table of a dataset's rejected rows (``lakehouse.quarantine``)
    quarantine/vendor/{dataset}/_delta_log/...      Delta table of vendor files' rejected rows, by file sha256
    artifacts/{dataset}/[date=YYYY-MM-DD/]{file}    parquet files (vendor supersessions, reports)

Tiers are ``raw`` (append-only and immutable: objects are never overwritten nor deleted),
``processed``, ``models``, ``quarantine`` and ``artifacts``. Every write is atomic: a table write is one Delta
commit (readers see the previous version or the new one), an object write replaces the whole object.
Both backends share every code path above ``ObjectStore``; delta-rs talks to the same folder or bucket.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from wealth_pipeline.lakehouse import delta

TIERS: tuple[str, ...] = ("raw", "processed", "models", "quarantine", "artifacts")
IMMUTABLE_TIERS: frozenset[str] = frozenset({"raw"})
#: Tiers whose frames are Delta Lake tables (one commit per write, history, schema enforcement).
DELTA_TIERS: frozenset[str] = frozenset({"processed", "models", "quarantine"})
DEFAULT_FILENAME = "data.parquet"
PARQUET_COMPRESSION = "zstd"
PARQUET_ROW_GROUP_SIZE = 128 * 1024
PARTITION_DIR_PREFIX = "date="

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-=]*$")

T = TypeVar("T")


class LakehouseError(Exception):
    """Base class of the lakehouse's own errors."""


class ImmutableTierError(LakehouseError):
    """An operation would change or delete an object of an immutable (append-only) tier."""


class ObjectNotFoundError(LakehouseError, FileNotFoundError):
    """No object exists at a key; the message names its URI."""


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of ``data``: the name of a content-addressed raw object (``f"{hash}.parquet"``)."""
    return hashlib.sha256(data).hexdigest()


def validate_key(key: str) -> str:
    """Return ``key`` if it is a relative posix key of safe segments, else raise ``ValueError``.

    Segments may not be empty, ``.``/``..`` or start with a dot: dot-files are reserved for the
    temporary files of atomic local writes and are never listed.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid object key {key!r}: expected a non-empty string")
    if "\\" in key or key.startswith("/"):
        raise ValueError(f"invalid object key {key!r}: keys are relative posix paths")
    for segment in key.split("/"):
        if not segment or segment.startswith(".") or any(ch in segment for ch in "\x00\n\r"):
            raise ValueError(f"invalid object key {key!r}: bad segment {segment!r}")
    return key


def _is_immutable(key: str) -> bool:
    return key.split("/", 1)[0] in IMMUTABLE_TIERS


class ObjectStore(abc.ABC):
    """Bytes under relative posix keys. Writes are atomic; keys under ``raw/`` are immutable."""

    #: Threads used to fetch many objects at once (see ``get_many``).
    read_concurrency: int = 4
    #: Threads used to write many immutable objects at once (``raw.write_versions``).
    write_concurrency: int = 4

    @abc.abstractmethod
    def _put_bytes(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` unless an object exists there; return whether it was written."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object at ``key``; raises ``ObjectNotFoundError`` naming its URI when missing."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""

    @abc.abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix`` (a plain string prefix, recursive), sorted."""

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def uri(self, key: str = "") -> str:
        """A human- and tool-readable location of ``key``: a file path or an ``s3://`` URI."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically, replacing any previous object.

        Refused under immutable tiers (``raw/``), where ``put_bytes_if_absent`` is the only write.
        """
        validate_key(key)
        if _is_immutable(key):
            raise ImmutableTierError(
                f"refusing to put {self.uri(key)}: the raw tier is append-only and immutable; "
                "use put_bytes_if_absent with a content-hashed key"
            )
        self._put_bytes(key, data)

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (no error when missing); refused for immutable tiers."""
        validate_key(key)
        if _is_immutable(key):
            raise ImmutableTierError(
                f"refusing to delete {self.uri(key)}: the raw tier is append-only and immutable"
            )
        self._delete(key)

    def get_many(self, keys: list[str]) -> list[bytes]:
        """The objects at ``keys``, in order, fetched with up to ``read_concurrency`` threads."""
        return map_threads(self.get_bytes, keys, self.read_concurrency)


def map_threads(fn: Callable[[Any], T], items: list[Any], workers: int) -> list[T]:
    """``[fn(item) for item in items]`` on up to ``workers`` threads, in order; the first error is raised."""
    if len(items) <= 1 or workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="lakehouse") as pool:
        return list(pool.map(fn, items))


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; atomic writes through a temp file, fsync and ``os.replace``."""

    read_concurrency = 4

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def uri(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)

    def _write_temp(self, path: Path, data: bytes) -> Path:
        """Write ``data`` to a new hidden temp file next to ``path`` and fsync it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        # os.open with 0o666 honours the umask (mkstemp would leave the final file 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        """Persist a rename in ``folder`` (POSIX); a no-op where directories cannot be opened."""
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._fsync_dir(path.parent)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        tmp = self._write_temp(path, data)
        try:
            # A hard link publishes the complete file atomically and fails if the name is taken,
            # so two concurrent writers cannot both "create" the object.
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # Filesystems without hard links: best effort (the content-hashed name makes races benign).
            if path.exists():
                return False
            os.replace(tmp, path)
            self._fsync_dir(path.parent)
            return True
        finally:
            tmp.unlink(missing_ok=True)
        self._fsync_dir(path.parent)
        return True

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object at {path}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str = "") -> list[str]:
        # Walk the deepest folder the prefix names, then filter by the plain string prefix.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return []
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue  # temp files of in-flight atomic writes
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3ObjectStore(ObjectStore):
    """Objects in an S3 (or S3-compatible: MinIO, moto) bucket under an optional key prefix.

    ``client`` is a boto3 S3 client, e.g. ``dagster_aws.s3.S3Resource(...).get_client()``. A single
    PUT is atomic in S3; ``put_bytes_if_absent`` uses a conditional PUT (``If-None-Match: *``).
    """

    read_concurrency = 8
    write_concurrency = 8

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.uri()!r})"

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str = "") -> str:
        if not key:
            return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"s3://{self.bucket}/{self._full(validate_key(key))}"

    @staticmethod
    def _code(exc: Exception) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def _raise_bucket(self, exc: Exception, key: str) -> None:
        if self._code(exc) == "NoSuchBucket":
            raise LakehouseError(
                f"S3 bucket {self.bucket!r} does not exist (while accessing {self.uri(key)})"
            ) from exc

    def _put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)
        except Exception as exc:
            self._raise_bucket(exc, key)
            raise

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        # HEAD first: cheap, and correct on S3-compatible stores that ignore If-None-Match.
        if self.exists(key):
            return False
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, IfNoneMatch="*")
        except Exception as exc:
            code = self._code(exc)
            if code in ("PreconditionFailed", "412"):
                return False
            if code in ("ConditionalRequestConflict", "409"):
                # A concurrent conditional write of the same key is in flight; whoever wins, the
                # object is content-addressed, so it is not ours to write.
                return False
            self._raise_bucket(exc, key)
            raise
        return True

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFoundError(f"no object at {self.uri(key)}") from None
            self._raise_bucket(exc, key)
            raise
        body = response["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list_keys(self, prefix: str = "") -> list[str]:
        full_prefix = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", ()))
        except Exception as exc:
            self._raise_bucket(exc, prefix)
            raise
        return sorted(keys)

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))


def s3_client(endpoint_url: str | None = None, region: str = "us-east-1") -> Any:
    """A boto3 S3 client built by dagster-aws; credentials come from the usual AWS chain."""
    from dagster_aws.s3 import S3Resource

    return S3Resource(endpoint_url=endpoint_url, region_name=region).get_client()


def open_store(uri: str, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1") -> ObjectStore:
    """The object store a lakehouse URI names: a folder, ``file://`` URI or ``s3://bucket/prefix``."""
    if not uri or not uri.strip():
        raise ValueError("empty lakehouse URI: expected a folder or s3://bucket/prefix")
    uri = uri.strip()
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"invalid lakehouse URI {uri!r}: expected s3://bucket[/prefix]")
        return S3ObjectStore(s3_client(s3_endpoint_url, s3_region), bucket, prefix)
    if uri.startswith("file://"):
        return LocalObjectStore(Path(uri[len("file://") :]))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", uri):
        raise ValueError(f"unsupported lakehouse URI {uri!r}: expected a folder, file:// or s3://")
    return LocalObjectStore(Path(uri))


def frame_to_parquet(frame: pl.DataFrame) -> bytes:
    """Serialize ``frame`` to parquet bytes (zstd, ~128k-row groups, column statistics)."""
    buffer = io.BytesIO()
    frame.write_parquet(
        buffer,
        compression=PARQUET_COMPRESSION,
        row_group_size=PARQUET_ROW_GROUP_SIZE,
        statistics=True,
    )
    return buffer.getvalue()


def parquet_to_frame(
    data: bytes, *, columns: list[str] | None = None, source: str = "<bytes>"
) -> pl.DataFrame:
    """Parse parquet bytes; a corrupt file or a missing column raises an error naming ``source``."""
    try:
        available = pl.read_parquet_schema(io.BytesIO(data)) if columns is not None else {}
    except Exception as exc:
        raise LakehouseError(f"cannot read parquet {source}: {exc}") from exc
    missing = [name for name in columns or [] if name not in available]
    if missing:
        raise LakehouseError(f"{source}: no column(s) {missing}; stored columns are {list(available)}")
    try:
        return pl.read_parquet(io.BytesIO(data), columns=columns)
    except Exception as exc:
        raise LakehouseError(f"cannot read parquet {source}: {exc}") from exc


def _check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ValueError(f"unknown lakehouse tier {tier!r}; expected one of {list(TIERS)}")
    return tier


def _check_dataset(dataset: str) -> str:
    segments = dataset.split("/") if isinstance(dataset, str) else [""]
    if not all(_SEGMENT.match(segment) for segment in segments):
        raise ValueError(
            f"invalid dataset name {dataset!r}: use letters, digits, '_', '-', '.' (segments joined by '/')"
        )
    return dataset


def _check_filename(filename: str) -> str:
    if not isinstance(filename, str) or not _FILENAME.match(filename):
        raise ValueError(f"invalid file name {filename!r}: one path segment, not starting with '.'")
    return filename


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


class Lakehouse:
    """Tiered datasets and JSON manifests on an ``ObjectStore``.

    Frames in the ``processed``, ``models`` and ``quarantine`` tiers are Delta Lake tables (``lakehouse.delta``): one
    table per dataset, one commit per write, readable as of any version inside the vacuum retention.
    Frames in ``raw`` (immutable, content-addressed) and ``artifacts`` are parquet files as before.
    JSON manifests and other objects are plain objects in every tier.
    """

    def __init__(self, store: ObjectStore, *, s3_endpoint_url: str | None = None,
                 s3_region: str | None = None) -> None:
        self.store = store
        if isinstance(store, S3ObjectStore):
            endpoint = s3_endpoint_url
            if endpoint is None:
                configured = str(getattr(store.client.meta, "endpoint_url", "") or "")
                endpoint = configured if configured and "amazonaws.com" not in configured else None
            region = s3_region or str(getattr(store.client.meta, "region_name", None) or "us-east-1")
            options = delta.s3_options(endpoint, region)
        else:
            options = {}
        self.tables = delta.DeltaTables(store.uri(), options, store)
        self._bucket_checked = not isinstance(store, S3ObjectStore)

    def __repr__(self) -> str:
        return f"Lakehouse({self.store!r})"

    @classmethod
    def from_uri(
        cls, uri: str, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1"
    ) -> Lakehouse:
        """A lakehouse on a local folder (or ``file://`` URI) or on ``s3://bucket/prefix``."""
        return cls(open_store(uri, s3_endpoint_url, s3_region), s3_endpoint_url=s3_endpoint_url,
                   s3_region=s3_region)

    # -- keys ---------------------------------------------------------------------------------------

    @staticmethod
    def partition_key(tier: str, dataset: str, partition: dt.date, filename: str = DEFAULT_FILENAME) -> str:
        """``{tier}/{dataset}/date=YYYY-MM-DD/{filename}`` (parquet tiers; JSON documents in every tier)."""
        if not isinstance(partition, dt.date) or isinstance(partition, dt.datetime):
            raise TypeError(f"partition must be a datetime.date, got {partition!r}")
        return (
            f"{_check_tier(tier)}/{_check_dataset(dataset)}/"
            f"{PARTITION_DIR_PREFIX}{partition.isoformat()}/{_check_filename(filename)}"
        )

    @staticmethod
    def dataset_key(tier: str, dataset: str, filename: str = DEFAULT_FILENAME) -> str:
        """``{tier}/{dataset}/{filename}``."""
        return f"{_check_tier(tier)}/{_check_dataset(dataset)}/{_check_filename(filename)}"

    @staticmethod
    def table_key(tier: str, dataset: str) -> str:
        """``{tier}/{dataset}``: the root of a dataset's Delta table (``_delta_log/`` under it)."""
        return f"{_check_tier(tier)}/{_check_dataset(dataset)}"

    @staticmethod
    def is_table_tier(tier: str) -> bool:
        """Whether frames of ``tier`` are Delta tables (else parquet files)."""
        return _check_tier(tier) in DELTA_TIERS

    def uri(self, key: str = "") -> str:
        """The URI of ``key`` (the lakehouse root when empty)."""
        return self.store.uri(key)

    def table_uri(self, tier: str, dataset: str) -> str:
        """The URI delta-rs, polars or DuckDB open for a dataset's table."""
        return self.tables.location(self.table_key(tier, dataset)).uri

    def storage_options(self) -> dict[str, str]:
        """delta-rs / polars ``storage_options`` for this lakehouse's tables (no credentials in them)."""
        return dict(self.tables.options)

    # -- Delta plumbing -----------------------------------------------------------------------------

    def _ensure_bucket(self) -> None:
        """On S3, fail with the bucket's name before delta-rs reports a missing table instead."""
        if self._bucket_checked:
            return
        store = self.store
        assert isinstance(store, S3ObjectStore)
        try:
            store.client.head_bucket(Bucket=store.bucket)
        except Exception as exc:
            if store._code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise LakehouseError(
                    f"S3 bucket {store.bucket!r} does not exist (while accessing {store.uri()})"
                ) from exc
            raise
        self._bucket_checked = True

    def _table(self, tier: str, dataset: str) -> str:
        self._ensure_bucket()
        return self.table_key(tier, dataset)

    @staticmethod
    def _frame(frame: Any) -> pl.DataFrame:
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(f"expected a polars DataFrame, got {type(frame).__name__}")
        return frame

    def commit_rows(
        self, tier: str, dataset: str, rows: pl.DataFrame, start: dt.date | None, end: dt.date | None,
        *, dated: bool = True,
    ) -> delta.DeltaWrite:
        """Replace the window ``[start, end]`` (every file name) with ``rows`` that already carry the
        bookkeeping columns (``delta.with_bookkeeping``), in one commit; used by the migration."""
        if not self.is_table_tier(tier):
            raise ValueError(f"{tier!r} is not a table tier ({sorted(DELTA_TIERS)})")
        return self._commit(tier, dataset, rows, start, end, None, dated=dated)

    def _commit(
        self, tier: str, dataset: str, rows: pl.DataFrame, start: dt.date | None, end: dt.date | None,
        filename: str | None, *, dated: bool,
    ) -> delta.DeltaWrite:
        table = self._table(tier, dataset)
        predicate = delta.window_predicate(start, end, filename)
        where = delta.window_filter(start, end, filename)
        if not dated:
            predicate = f"{delta.DATE_COLUMN} IS NULL AND {predicate}"
            where = where & pl.col(delta.DATE_COLUMN).is_null()
        try:
            version, changed = self.tables.replace(table, rows, predicate, where)
        except (ValueError, delta.TableConflictError):
            raise
        except Exception as exc:
            raise LakehouseError(f"cannot write {self.table_uri(tier, dataset)}: {exc}") from exc
        days = rows[delta.DATE_COLUMN].drop_nulls().n_unique() if dated else (1 if rows.height else 0)
        return delta.DeltaWrite(self.table_uri(tier, dataset), version, changed=changed, rows=rows.height,
                                partitions=days)

    def _select(
        self, tier: str, dataset: str, where: pl.Expr, columns: list[str] | None,
        as_of: int | str | dt.datetime | None,
    ) -> pl.DataFrame | None:
        table = self._table(tier, dataset)
        try:
            found = self.tables.read(table, where, columns, as_of)
        except KeyError as exc:
            raise LakehouseError(f"{self.table_uri(tier, dataset)}: {exc.args[0]}") from None
        return None if found is None else found[0]

    # -- writes -------------------------------------------------------------------------------------

    def _write(self, tier: str, key: str, data: bytes, same_content: Callable[[bytes], bool]) -> str:
        if tier in IMMUTABLE_TIERS:
            if not self.store.put_bytes_if_absent(key, data):
                existing = self.store.get_bytes(key)
                if existing != data and not same_content(existing):
                    raise ImmutableTierError(
                        f"{self.store.uri(key)} already exists with different content; the raw tier is "
                        "immutable: name raw objects by content hash (content_hash) instead of reusing a name"
                    )
        else:
            self.store.put_bytes(key, data)
        return self.store.uri(key)

    def _write_frame(
        self, tier: str, frame: pl.DataFrame, make_key: Callable[[str], str], filename: str | None
    ) -> str:
        data = frame_to_parquet(self._frame(frame))
        if filename is None:
            filename = f"{content_hash(data)}.parquet" if tier in IMMUTABLE_TIERS else DEFAULT_FILENAME
        key = make_key(filename)

        def same(existing: bytes) -> bool:
            try:
                return parquet_to_frame(existing, source=self.store.uri(key)).equals(frame)
            except LakehouseError:
                return False

        return self._write(tier, key, data, same)

    def write_partition(
        self,
        tier: str,
        dataset: str,
        frame: pl.DataFrame,
        partition: dt.date,
        *,
        filename: str | None = None,
    ) -> str:
        """Write one daily partition atomically and return its URI.

        Table tiers: one commit replacing the partition's rows (those of ``filename``, default
        ``data.parquet``); the result is a ``DeltaWrite`` (the table URI, with ``.version``).
        Raw tier: ``filename`` defaults to ``{sha256 of the parquet}.parquet``; an existing object is
        never overwritten: the same content again is a no-op, different content under an existing
        name raises ``ImmutableTierError``. Artifacts: one parquet file, replaced atomically.
        """
        self.partition_key(tier, dataset, partition, filename or DEFAULT_FILENAME)  # validates
        if self.is_table_tier(tier):
            name = filename or DEFAULT_FILENAME
            rows = delta.with_bookkeeping(self._frame(frame), partition, name)
            return self._commit(tier, dataset, rows, partition, partition, name, dated=True)
        return self._write_frame(
            tier, frame, lambda name: self.partition_key(tier, dataset, partition, name), filename
        )

    def write_window(
        self,
        tier: str,
        dataset: str,
        frame: pl.DataFrame,
        date_column: str,
        start: dt.date,
        end: dt.date,
        *,
        filename: str = DEFAULT_FILENAME,
    ) -> delta.DeltaWrite:
        """Replace every partition of ``[start, end]`` with ``frame``'s rows (partitioned by ``date_column``).

        Table tiers: ONE commit, so readers see the old window or the new one; days of the window
        without rows end up empty. ``.partitions`` counts the days written (what the per-day loop
        returned before), ``.version`` the commit. Rows outside the window are refused.
        Parquet tiers: one file per day, stale days deleted (not atomic across days).
        """
        frame = self._frame(frame)
        if start > end:
            raise ValueError(f"empty window: start {start} is after end {end}")
        if date_column not in frame.columns:
            raise ValueError(f"{dataset}: no column {date_column!r} to partition by; columns are {frame.columns}")
        days = frame[date_column].cast(pl.Date)
        outside = frame.filter(~days.is_between(start, end) | days.is_null())
        if outside.height:
            raise ValueError(
                f"{dataset}: {outside.height} row(s) with {date_column} outside the window {start}..{end} "
                f"(first: {outside[date_column][0]}); write them with their own window"
            )
        if self.is_table_tier(tier):
            _check_filename(filename)
            rows = delta.with_bookkeeping(frame, pl.col(date_column), filename)
            return self._commit(tier, dataset, rows, start, end, filename, dated=True)
        by_day = {key[0]: part for key, part in frame.partition_by(date_column, as_dict=True).items()}
        for day in sorted(set(self.partitions(tier, dataset, start, end)) - set(by_day)):
            self.delete_partition(tier, dataset, day)
        for day, part in sorted(by_day.items()):
            self.write_partition(tier, dataset, part, day, filename=filename)
        return delta.DeltaWrite(self.uri(self.table_key(tier, dataset)), None, rows=frame.height,
                                partitions=len(by_day))

    def write_dataset(self, tier: str, dataset: str, frame: pl.DataFrame, filename: str | None = None) -> str:
        """Write an unpartitioned dataset (``{tier}/{dataset}/{filename}``) atomically; return its URI.

        Table tiers: one commit replacing the rows written under ``filename`` (a ``DeltaWrite``).
        """
        name = filename or DEFAULT_FILENAME
        self.dataset_key(tier, dataset, name)  # validates
        if self.is_table_tier(tier):
            rows = delta.with_bookkeeping(self._frame(frame), None, name)
            return self._commit(tier, dataset, rows, None, None, name, dated=False)
        return self._write_frame(tier, frame, lambda name: self.dataset_key(tier, dataset, name), filename)

    def put_json(
        self, tier: str, dataset: str, name: str, obj: Any, *, partition: dt.date | None = None
    ) -> str:
        """Write a small JSON document (a manifest) at ``{tier}/{dataset}[/date=...]/{name}``; return its URI."""
        key = (
            self.partition_key(tier, dataset, partition, name)
            if partition is not None
            else self.dataset_key(tier, dataset, name)
        )
        data = json.dumps(obj, sort_keys=True, indent=2, default=_json_default).encode("utf-8")

        def same(existing: bytes) -> bool:
            try:
                return json.loads(existing) == json.loads(data)
            except ValueError:
                return False

        return self._write(tier, key, data, same)

    def get_json(self, tier: str, dataset: str, name: str, *, partition: dt.date | None = None) -> Any:
        """Read a JSON document written by ``put_json``."""
        key = (
            self.partition_key(tier, dataset, partition, name)
            if partition is not None
            else self.dataset_key(tier, dataset, name)
        )
        data = self.store.get_bytes(key)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise LakehouseError(f"invalid JSON in {self.store.uri(key)}: {exc}") from exc

    def delete_partition(self, tier: str, dataset: str, partition: dt.date) -> int:
        """Delete one partition (refused in the raw tier); return how many files (parquet) or rows (tables)."""
        _check_tier(tier)
        if self.is_table_tier(tier):
            deleted, _ = self.tables.delete(
                self._table(tier, dataset), delta.window_predicate(partition, partition, None))
            return deleted
        prefix = f"{tier}/{_check_dataset(dataset)}/{PARTITION_DIR_PREFIX}{partition.isoformat()}/"
        keys = self.store.list_keys(prefix)
        if tier in IMMUTABLE_TIERS and keys:
            raise ImmutableTierError(
                f"refusing to delete {self.store.uri(prefix.rstrip('/'))}: the raw tier is append-only"
            )
        for key in keys:
            self.store.delete(key)
        return len(keys)

    # -- versions -----------------------------------------------------------------------------------

    def version(self, tier: str, dataset: str, as_of: int | str | dt.datetime | None = None) -> int | None:
        """The table's current version (or the one ``as_of`` resolves to); None without a table."""
        if not self.is_table_tier(tier):
            return None
        handle = self.tables.open(self._table(tier, dataset), as_of)
        return None if handle is None else int(handle.version())

    def versions(self, tier: str, datasets: list[str]) -> dict[str, int | None]:
        """Current version of each dataset's table (what a model manifest records)."""
        return {name: self.version(tier, name) for name in datasets}

    def history(self, tier: str, dataset: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first (version, timestamp, operation, metrics).

        delta-rs numbers these by counting down from the version it loaded: while another writer
        commits, use a write's own ``.version`` (read from its commit file) instead.
        """
        return self.tables.history(self._table(tier, dataset), limit)

    def table_names(self, tier: str) -> list[str]:
        """Datasets of ``tier`` stored as Delta tables (every folder holding a ``_delta_log/``)."""
        prefix = f"{_check_tier(tier)}/"
        return [key[len(prefix):] for key in delta.tables_under(self.store.list_keys(prefix))]

    # -- reads --------------------------------------------------------------------------------------

    def _partition_keys(self, tier: str, dataset: str) -> list[tuple[dt.date, str, str]]:
        """(date, filename, key) of every object in the dataset's partitions, from one listing."""
        prefix = f"{_check_tier(tier)}/{_check_dataset(dataset)}/{PARTITION_DIR_PREFIX}"
        found: list[tuple[dt.date, str, str]] = []
        for key in self.store.list_keys(prefix):
            rest = key[len(prefix) :]
            day, sep, filename = rest.partition("/")
            if not sep or "/" in filename:
                continue  # not a partition file of this dataset (e.g. a nested folder)
            try:
                date = dt.date.fromisoformat(day)
            except ValueError:
                raise LakehouseError(
                    f"bad partition folder in {self.store.uri(key)}: expected date=YYYY-MM-DD"
                ) from None
            found.append((date, filename, key))
        return found

    def partitions(
        self, tier: str, dataset: str, start: dt.date | None = None, end: dt.date | None = None,
        *, as_of: int | str | dt.datetime | None = None,
    ) -> list[dt.date]:
        """The sorted dates holding data of ``dataset`` (inside ``[start, end]`` when given)."""
        if self.is_table_tier(tier):
            days = self.tables.dates(self._table(tier, dataset), as_of)
        else:
            days = sorted(
                {date for date, name, _ in self._partition_keys(tier, dataset) if name.endswith(".parquet")}
            )
        return [d for d in days if (start is None or d >= start) and (end is None or d <= end)]

    def partition_files(
        self,
        tier: str,
        dataset: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        filename: str | None = None,
    ) -> list[str]:
        """Keys of the parquet files in the inclusive window, sorted by date then name.

        Table tiers: the keys of the table's current data files whose dates overlap the window.
        """
        if start is not None and end is not None and start > end:
            raise ValueError(f"empty window: start {start} is after end {end}")
        if self.is_table_tier(tier):
            handle = self.tables.open(self._table(tier, dataset))
            if handle is None:
                return []
            actions = pl.DataFrame(handle.get_add_actions(flatten=True))
            lo, hi = f"min.{delta.DATE_COLUMN}", f"max.{delta.DATE_COLUMN}"
            if start is not None:
                actions = actions.filter(pl.col(hi) >= start)
            if end is not None:
                actions = actions.filter(pl.col(lo) <= end)
            base = self.table_key(tier, dataset)
            return sorted(f"{base}/{path}" for path in actions["path"].to_list())
        return [
            key
            for date, name, key in self._partition_keys(tier, dataset)
            if name.endswith(".parquet")
            and (filename is None or name == filename)
            and (start is None or date >= start)
            and (end is None or date <= end)
        ]

    @staticmethod
    def _empty(columns: list[str] | None, schema: dict[str, pl.DataType] | None) -> pl.DataFrame:
        if schema is not None:
            names = columns if columns is not None else list(schema)
            return pl.DataFrame(schema={name: schema[name] for name in names})
        return pl.DataFrame(schema={name: pl.Null for name in columns or []})

    @staticmethod
    def _cast(result: pl.DataFrame, columns: list[str] | None, schema: dict[str, pl.DataType] | None,
              source: str) -> pl.DataFrame:
        if schema is None:
            return result
        names = columns if columns is not None else list(schema)
        missing = [name for name in names if name not in result.columns]
        if missing:
            raise LakehouseError(f"{source}: missing column(s) {missing}")
        return result.select([pl.col(name).cast(schema[name]) for name in names])

    def _read_frames(
        self, keys: list[str], columns: list[str] | None, schema: dict[str, pl.DataType] | None
    ) -> pl.DataFrame:
        if not keys:
            return self._empty(columns, schema)

        def load(key: str) -> pl.DataFrame:
            return parquet_to_frame(self.store.get_bytes(key), columns=columns, source=self.store.uri(key))

        frames = map_threads(load, keys, self.store.read_concurrency)
        expected = frames[0].columns
        for key, frame in zip(keys, frames, strict=True):
            if frame.columns != expected:
                raise LakehouseError(
                    f"{self.store.uri(key)} has columns {frame.columns}, but {self.store.uri(keys[0])} "
                    f"has {expected}: partitions of one dataset must share a schema"
                )
        result = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed", rechunk=True)
        return self._cast(result, columns, schema, self.store.uri(keys[0]))

    def read_partitions(
        self,
        tier: str,
        dataset: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        filename: str | None = None,
        columns: list[str] | None = None,
        schema: dict[str, pl.DataType] | None = None,
        as_of: int | str | dt.datetime | None = None,
    ) -> pl.DataFrame:
        """Every partition in the inclusive window ``[start, end]`` as one frame, in date order.

        Only stored columns are returned (no partition column is added). With no matching data the
        frame has no rows: its columns are the table's (tables), else ``schema``'s (cast to it when
        given), else ``columns`` typed Null, else none. ``filename`` restricts the read to the rows
        or files of that name. ``as_of`` (tables only): a version number, or a datetime / ISO
        timestamp meaning the latest commit at or before it.
        """
        if start is not None and end is not None and start > end:
            raise ValueError(f"empty window: start {start} is after end {end}")
        if self.is_table_tier(tier):
            where = delta.window_filter(start, end, filename) & pl.col(delta.DATE_COLUMN).is_not_null()
            found = self._select(tier, dataset, where, columns, as_of)
            if found is None:
                return self._empty(columns, schema)
            return self._cast(found, columns, schema, self.table_uri(tier, dataset))
        if as_of is not None:
            raise ValueError(f"as_of reads need a table tier ({sorted(DELTA_TIERS)}); {tier!r} keeps no history")
        keys = self.partition_files(tier, dataset, start, end, filename=filename)
        return self._read_frames(keys, columns, schema)

    def read_with_partitions(
        self,
        tier: str,
        dataset: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        as_of: int | str | dt.datetime | None = None,
    ) -> tuple[pl.DataFrame, pl.Series]:
        """``read_partitions`` plus, aligned with its rows, the partition date of each row."""
        if self.is_table_tier(tier):
            where = delta.window_filter(start, end, None) & pl.col(delta.DATE_COLUMN).is_not_null()
            found = self.tables.read(self._table(tier, dataset), where, None, as_of, keep_bookkeeping=True)
            if found is None:
                return pl.DataFrame(), pl.Series(delta.DATE_COLUMN, [], dtype=pl.Date)
            frame = found[0]
            return frame.drop(*delta.SORT_COLUMNS), frame[delta.DATE_COLUMN]
        if as_of is not None:
            raise ValueError(f"as_of reads need a table tier ({sorted(DELTA_TIERS)}); {tier!r} keeps no history")
        keys = sorted((d, k) for d, _, k in self._partition_keys(tier, dataset) if k.endswith(".parquet")
                      and (start is None or d >= start) and (end is None or d <= end))
        frames = [self._read_frames([k], None, None) for _, k in keys]
        frame = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
        days = pl.Series(delta.DATE_COLUMN, [d for (d, _), f in zip(keys, frames, strict=True) for _ in range(f.height)],
                         dtype=pl.Date)
        return frame, days

    def read(
        self,
        tier: str,
        dataset: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        columns: list[str] | None = None,
        as_of: int | str | dt.datetime | None = None,
    ) -> pl.DataFrame:
        """A table's rows (a date window of them when given), as of a version or time when given."""
        if not self.is_table_tier(tier):
            return self.read_partitions(tier, dataset, start, end, columns=columns)
        where = delta.window_filter(start, end, None)
        if start is not None or end is not None:
            where = where & pl.col(delta.DATE_COLUMN).is_not_null()
        found = self._select(tier, dataset, where, columns, as_of)
        if found is None:
            raise ObjectNotFoundError(f"no table at {self.table_uri(tier, dataset)}")
        return found

    def read_partition(
        self,
        tier: str,
        dataset: str,
        partition: dt.date,
        *,
        filename: str = DEFAULT_FILENAME,
        columns: list[str] | None = None,
        as_of: int | str | dt.datetime | None = None,
    ) -> pl.DataFrame:
        """One partition; raises ``ObjectNotFoundError`` naming its URI when missing."""
        key = self.partition_key(tier, dataset, partition, filename)
        if self.is_table_tier(tier):
            found = self._select(tier, dataset, delta.window_filter(partition, partition, filename), columns, as_of)
            if found is None or found.is_empty():
                raise ObjectNotFoundError(
                    f"no partition {partition} ({filename}) in {self.table_uri(tier, dataset)}")
            return found
        return parquet_to_frame(self.store.get_bytes(key), columns=columns, source=self.store.uri(key))

    def read_dataset(
        self,
        tier: str,
        dataset: str,
        filename: str = DEFAULT_FILENAME,
        *,
        columns: list[str] | None = None,
        as_of: int | str | dt.datetime | None = None,
    ) -> pl.DataFrame:
        """An unpartitioned dataset; raises ``ObjectNotFoundError`` naming its URI when missing."""
        key = self.dataset_key(tier, dataset, filename)
        if self.is_table_tier(tier):
            where = pl.col(delta.DATE_COLUMN).is_null() & (pl.col(delta.FILE_COLUMN) == filename)
            found = self._select(tier, dataset, where, columns, as_of)
            if found is None:
                raise ObjectNotFoundError(f"no table at {self.table_uri(tier, dataset)}")
            return found
        return parquet_to_frame(self.store.get_bytes(key), columns=columns, source=self.store.uri(key))

    def exists(
        self, tier: str, dataset: str, filename: str = DEFAULT_FILENAME, *, partition: dt.date | None = None
    ) -> bool:
        """Whether a dataset (or, with ``partition``, a partition) holds data."""
        key = (
            self.partition_key(tier, dataset, partition, filename)
            if partition is not None
            else self.dataset_key(tier, dataset, filename)
        )
        if self.is_table_tier(tier):
            if partition is None:
                where = pl.col(delta.DATE_COLUMN).is_null() & (pl.col(delta.FILE_COLUMN) == filename)
            else:
                where = delta.window_filter(partition, partition, filename)
            found = self.tables.read(self._table(tier, dataset), where, [], keep_bookkeeping=True)
            return found is not None and found[0].height > 0
        return self.store.exists(key)

    def datasets(self, tier: str) -> list[str]:
        """Names of the datasets holding at least one object in ``tier`` (first key segment)."""
        prefix = f"{_check_tier(tier)}/"
        names = {key[len(prefix) :].split("/", 1)[0] for key in self.store.list_keys(prefix)}
        return sorted(names)
