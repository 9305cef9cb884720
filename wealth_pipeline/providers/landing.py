"""Vendor files in a landing zone (a folder or an S3 prefix) as a market data provider.

Files are ``<dataset>/<name>.csv|.csv.gz|.parquet`` (layouts in ``docs/vendor-file-layouts.md``;
any other file there is a file error, kept and reported) and are
applied in lexicographic order of their path: name deliveries with a sortable timestamp
(``bars/2024-07-09T2200Z-vendorx.csv``). A later file's row for a key already delivered supersedes the
earlier row; every supersession is reported. Factor returns, the risk-free rate and benchmark returns
come from ``factor_returns/``, ``risk_free/`` and ``benchmark_returns/`` CSV files when there are any
(``reference_files.py``), the symbol master from ``symbol_master/*.csv``; otherwise all of them come
from a reference provider.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from wealth_pipeline.core import calendars
from wealth_pipeline.lakehouse.store import ObjectStore, open_store
from wealth_pipeline.providers import base, reference_files, securities_file
from wealth_pipeline.providers.base import MarketDataProvider
from wealth_pipeline.providers.vendor_files import DATASETS, VendorFileError, parse_vendor_file

SYMBOL_MASTER_FOLDER = "symbol_master"
_KEYS: dict[str, tuple[str, ...]] = {
    "bars": ("symbol", "session_date"),
    "corporate_actions": ("symbol", "ex_date", "action_type", "distribution_type"),
    "fx_rates": ("base_currency", "quote_currency", "session_date"),
}
_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "bars": base.BARS_SCHEMA,
    "corporate_actions": base.CORPORATE_ACTIONS_SCHEMA,
    "fx_rates": base.FX_RATES_SCHEMA,
}
_DATE_COLUMNS = {"bars": "session_date", "corporate_actions": "ex_date", "fx_rates": "session_date"}
FILE_COLUMN = "file"  # with_files(): the landing key (path under the root) of the file each row comes from
# with_files() of vendor datasets: the row's line in that file (parquet: its 1-based row)
LINE_COLUMN = "line"


@dataclass(frozen=True)
class Delivery:
    """One landing file: its bytes' hash, what parsing made of it, or why it was refused whole."""

    key: str
    dataset: str
    sha256: str
    data: bytes = field(repr=False)
    good: pl.DataFrame = field(repr=False)
    rejects: pl.DataFrame = field(repr=False)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    lines: pl.Series | None = field(default=None, repr=False)  # the line of each good row

    def good_with_lines(self) -> pl.DataFrame:
        """The good rows plus ``LINE_COLUMN`` (null when the lines are unknown)."""
        if self.lines is not None and self.lines.len() == self.good.height:
            return self.good.with_columns(self.lines.cast(pl.Int64).alias(LINE_COLUMN))
        return self.good.with_columns(pl.lit(None, dtype=pl.Int64).alias(LINE_COLUMN))

    def dates(self) -> list[dt.date]:
        if self.good.is_empty():
            return []
        return sorted(self.good[_DATE_COLUMNS[self.dataset]].unique().to_list())


def landing_files(store: ObjectStore, dataset: str) -> list[str]:
    """Every object under ``<dataset>/`` (folder placeholders ending in "/" aside), sorted."""
    return sorted(k for k in store.list_keys(dataset + "/") if not k.endswith("/"))


class LandingZone:
    """The files waiting in the landing zone."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @classmethod
    def from_uri(
        cls, uri: str, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1"
    ) -> LandingZone:
        return cls(open_store(uri, s3_endpoint_url, s3_region))

    def files(self, dataset: str) -> list[str]:
        """Keys of every file under the dataset's folder, in delivery (lexicographic) order.

        Whatever the extension: ``.csv``, ``.csv.gz`` and ``.parquet`` are parsed; any other file is a
        delivery refused whole with a one-line error (kept in raw and reported, never skipped unseen).
        """
        return landing_files(self.store, dataset)

    def read(self, key: str) -> bytes:
        return self.store.get_bytes(key)


def symbol_master_from_csv(data: bytes, source: str) -> pl.DataFrame:
    """A symbol master file: ``providers.securities_file`` (identity columns optional, check digits verified)."""
    return securities_file.symbol_master_from_csv(data, source)


class VendorFileProvider:
    """Bars, corporate actions and FX from landing-zone files; the rest from ``reference``."""

    name = "vendor"

    def __init__(self, landing: LandingZone, reference: MarketDataProvider) -> None:
        self.landing = landing
        self.reference = reference
        self._parsed: dict[tuple[str, str], Delivery] = {}

    # ---- reference datasets ------------------------------------------------------------------
    def symbol_master(self) -> pl.DataFrame:
        keys = sorted(
            k for k in self.landing.store.list_keys(SYMBOL_MASTER_FOLDER + "/") if k.lower().endswith(".csv")
        )
        if keys:
            return symbol_master_from_csv(self.landing.read(keys[-1]), self.landing.store.uri(keys[-1]))
        return self.reference.symbol_master()

    def index_membership(self) -> pl.DataFrame:
        """``index_membership/*.csv`` (all files, issue 21), else the reference provider's when the master is its too."""
        keys = self.landing.files(securities_file.MEMBERSHIP_FOLDER)
        if keys:
            return pl.concat(
                [
                    securities_file.index_membership_from_csv(self.landing.read(k), self.landing.store.uri(k))
                    for k in keys
                ]
            )
        masters = self.landing.store.list_keys(SYMBOL_MASTER_FOLDER + "/")
        reference = getattr(self.reference, "index_membership", None)
        if reference is None or any(k.lower().endswith(".csv") for k in masters):
            return pl.DataFrame(
                schema={
                    "index_name": pl.Utf8,
                    "security_id": pl.Utf8,
                    "valid_from": pl.Date,
                    "valid_to": pl.Date,
                }
            )
        return reference()

    def identifier_changes(self) -> pl.DataFrame:
        """Dated name/ISIN changes from ``identifier_changes/*.csv`` (issue 21); none without files."""
        files = self._reference_files(
            securities_file.CHANGES_FOLDER, securities_file.identifier_changes_from_csv
        )
        return (
            pl.concat(files)
            if files
            else pl.DataFrame(schema=dict.fromkeys(securities_file.CHANGES_COLUMNS, pl.Utf8))
        )

    def factor_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """``factor_returns/`` and ``risk_free/`` files when the landing zone has any (issue 21), else the reference's."""
        rows = self._factor_rows(start, end)
        return self.reference.factor_returns(start, end) if rows is None else rows.drop(FILE_COLUMN)

    def benchmark_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """``benchmark_returns/`` files when the landing zone has any (issue 21), else the reference's."""
        rows = self._benchmark_rows(start, end)
        return self.reference.benchmark_returns(start, end) if rows is None else rows.drop(FILE_COLUMN)

    def _factor_rows(self, start: dt.date, end: dt.date) -> pl.DataFrame | None:
        """The landing zone's factor rows of the window with their file; None without factor files."""
        factors = self._reference_files(
            reference_files.FACTOR_FOLDER, reference_files.factor_returns_from_csv
        )
        risk_free = self._reference_files(
            reference_files.RISK_FREE_FOLDER, reference_files.risk_free_from_csv
        )
        if not factors and not risk_free:
            return None
        keys = ["session_date", "factor"]
        merged = reference_files.merge(factors, keys, base.FACTOR_RETURNS_SCHEMA, (FILE_COLUMN,))
        rf = reference_files.merge(
            risk_free, keys, base.FACTOR_RETURNS_SCHEMA, (FILE_COLUMN,)
        )  # a T-bill series replaces rf rows
        merged = pl.concat([merged.join(rf.select(keys), on=keys, how="anti"), rf]).sort(keys)
        return merged.filter(pl.col("session_date").is_between(start, end))

    def _benchmark_rows(self, start: dt.date, end: dt.date) -> pl.DataFrame | None:
        """The landing zone's benchmark rows of the window with their file; None without benchmark files."""
        files = self._reference_files(
            reference_files.BENCHMARK_FOLDER, reference_files.benchmark_returns_from_csv
        )
        if not files:
            return None
        merged = reference_files.merge(
            files, ["session_date", "benchmark"], base.BENCHMARK_RETURNS_SCHEMA, (FILE_COLUMN,)
        )
        return merged.filter(pl.col("session_date").is_between(start, end))

    def _reference_files(
        self, folder: str, parse: Callable[[bytes, str], pl.DataFrame]
    ) -> list[pl.DataFrame]:
        """Each file of ``folder`` parsed, with its landing key in ``FILE_COLUMN``."""
        keys = [k for k in self.landing.store.list_keys(folder + "/") if k.lower().endswith(".csv")]
        return [
            parse(self.landing.read(k), self.landing.store.uri(k)).with_columns(pl.lit(k).alias(FILE_COLUMN))
            for k in sorted(keys)
        ]

    def with_files(self, dataset: str, start: dt.date, end: dt.date) -> pl.DataFrame | None:
        """The window's rows of ``dataset`` as delivered, plus ``FILE_COLUMN``: the landing key of the file each
        row comes from (the later file when several delivered its key). None when the landing zone has no file
        of the dataset and the reference provider delivers it (factor and benchmark returns)."""
        if dataset in _KEYS:
            rows, _ = self._merge(dataset)
            return rows.filter(pl.col(_DATE_COLUMNS[dataset]).is_between(start, end))
        if dataset == "factor_returns":
            return self._factor_rows(start, end)
        if dataset == "benchmark_returns":
            return self._benchmark_rows(start, end)
        raise ValueError(f"landing-zone rows with their files: {[*_KEYS, 'factor_returns', 'benchmark_returns']}, "
                         f"not {dataset!r}")

    # ---- vendor datasets -----------------------------------------------------------------------
    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self._window("bars", start, end)

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self._window("corporate_actions", start, end)

    def fx_rates(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self._window("fx_rates", start, end)

    def deliveries(self, dataset: str) -> list[Delivery]:
        """Every file of ``dataset`` in delivery order, parsed once per content."""
        if dataset not in DATASETS:
            raise ValueError(f"vendor files carry {DATASETS}, not {dataset!r}")
        listings = dict(self.symbol_master().select("symbol", "exchange").iter_rows())
        found = []
        for key in self.landing.files(dataset):
            data = self.landing.read(key)
            sha = hashlib.sha256(data).hexdigest()
            cached = self._parsed.get((key, sha))
            if cached is None:
                cached = self._parse(key, dataset, data, sha, listings)
                self._parsed[(key, sha)] = cached
            found.append(cached)
        return found

    def _parse(self, key: str, dataset: str, data: bytes, sha: str, listings: dict[str, str]) -> Delivery:
        uri = self.landing.store.uri(key)
        try:
            parsed = parse_vendor_file(
                uri, data, dataset=dataset, known_symbols=listings, is_session=calendars.is_session
            )
        except VendorFileError as exc:
            return Delivery(
                key,
                dataset,
                sha,
                data,
                pl.DataFrame(schema=_SCHEMAS[dataset]),
                pl.DataFrame(),
                (),
                error=str(exc),
            )
        return Delivery(
            key, dataset, sha, data, parsed.good, parsed.rejects, tuple(parsed.warnings), lines=parsed.good_lines
        )

    def merged(self, dataset: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Good rows of all deliveries, later files superseding earlier rows per key, and the supersessions."""
        rows, supersessions = self._merge(dataset)
        return rows.drop(FILE_COLUMN, LINE_COLUMN), supersessions

    def _merge(self, dataset: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """:meth:`merged`, each row with the landing key of its file (``FILE_COLUMN``) and its line there."""
        keys = list(_KEYS[dataset])
        frames = [
            d.good_with_lines().with_columns(pl.lit(i).alias("_delivery"), pl.lit(d.key).alias("_file"))
            for i, d in enumerate(self.deliveries(dataset))
            if d.good.height
        ]
        if not frames:
            return pl.DataFrame(
                schema={**_SCHEMAS[dataset], FILE_COLUMN: pl.Utf8(), LINE_COLUMN: pl.Int64()}
            ), pl.DataFrame()
        stacked = pl.concat(frames)
        latest = stacked.sort("_delivery").unique(subset=keys, keep="last", maintain_order=True)
        value_cols = [c for c in _SCHEMAS[dataset] if c not in keys]
        earlier = stacked.join(
            latest.select(
                *keys, pl.col("_delivery").alias("_winner"), pl.col("_file").alias("superseded_by")
            ),
            on=keys,
        )
        superseded = earlier.filter(pl.col("_delivery") != pl.col("_winner"))
        changed = superseded.join(
            latest.select(*keys, *[pl.col(c).alias(f"{c}_new") for c in value_cols]), on=keys
        )
        differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_new")) for c in value_cols])
        supersessions = changed.filter(differs).select(*keys, pl.col("_file").alias("file"), "superseded_by")
        return latest.select(*_SCHEMAS[dataset], pl.col("_file").alias(FILE_COLUMN), LINE_COLUMN), supersessions

    def _window(self, dataset: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        rows, _ = self.merged(dataset)
        return rows.filter(pl.col(_DATE_COLUMNS[dataset]).is_between(start, end))
