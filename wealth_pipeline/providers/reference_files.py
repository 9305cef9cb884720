"""Vendor files for factor returns, benchmark returns and the risk-free rate (issue 21, item 5).

Without these the vendor path had no factor, benchmark or risk-free series (the synthetic reference
series start in 2015), so ``market.factor_returns``, ``market.benchmark_returns`` and the
exposures stayed empty and Sharpe used rf = 0. Layouts (docs/vendor-file-layouts.md):

* ``factor_returns/*.csv``: session_date, factor, value. Fama-French convention, daily simple
  returns as decimals (0.0012, not 0.12 %): ``market`` is the market's excess return, ``size``,
  ``value``, ``momentum`` long-short returns, ``rf`` the daily risk-free return.
* ``risk_free/*.csv``: session_date, annual_rate (a T-bill yield as a decimal, 0.0525); each row
  becomes the factor ``rf`` with value annual_rate / 252 (the synthetic market's convention) and
  replaces an ``rf`` row of a factor file for that date.
* ``benchmark_returns/*.csv``: session_date, benchmark, level, return (simple, from the previous
  session's level).

Files apply in lexicographic path order, a later file's row superseding an earlier one for the
same key. Any bad row refuses the whole file (VendorFileError naming file, row, field and what
would be valid): these series are small and a partial one would silently bias every regression.
"""

from __future__ import annotations

import math

import polars as pl

from wealth_pipeline.core.schemas import (
    BENCHMARK_RETURNS_SCHEMA,
    FACTOR_RETURNS_SCHEMA,
    FACTORS,
    RISK_FREE_FACTOR,
)
from wealth_pipeline.providers.vendor_files import VendorFileError, read_text_csv

FACTOR_FOLDER, RISK_FREE_FOLDER, BENCHMARK_FOLDER = "factor_returns", "risk_free", "benchmark_returns"
TRADING_DAYS = 252
MAX_ABS_DAILY_RETURN = 0.5  # a larger daily factor or index return is a unit error (percent), not a market
MAX_ANNUAL_RATE = 0.25


def _read(data: bytes, source: str, columns: tuple[str, ...]) -> pl.DataFrame:
    frame = read_text_csv(data, source, columns)
    return frame.select([pl.col(c).str.strip_chars().replace("", None) for c in columns])


def _parse_dates(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    parsed = frame["session_date"].str.to_date("%Y-%m-%d", strict=False)
    for row, (text, day) in enumerate(zip(frame["session_date"], parsed, strict=True), start=2):
        if day is None:
            raise VendorFileError(
                source, f"row {row}, field session_date: {text!r} is not a date (expected YYYY-MM-DD)"
            )
        if day.weekday() >= 5:
            raise VendorFileError(
                source, f"row {row}, field session_date: {day} is a weekend (expected a trading session)"
            )
    return frame.with_columns(parsed.alias("session_date"))


def _numbers(frame: pl.DataFrame, source: str, column: str, low: float, high: float, what: str) -> pl.Series:
    values = frame[column].cast(pl.Float64, strict=False)
    for row, (text, value) in enumerate(zip(frame[column], values, strict=True), start=2):
        if value is None or not math.isfinite(value) or not low <= value <= high:
            raise VendorFileError(source, f"row {row}, field {column}: {text!r}: expected {what}")
    return values


def _no_duplicates(frame: pl.DataFrame, source: str, keys: list[str]) -> None:
    numbered = frame.with_row_index("row", offset=2)
    dupes = numbered.filter(pl.struct(keys).is_duplicated())
    if dupes.height:
        first = dupes.row(1 if dupes.height > 1 else 0, named=True)
        raise VendorFileError(
            source,
            f"row {first['row']}: {', '.join(f'{k} {first[k]}' for k in keys)} appears twice "
            "in the file (one row per key)",
        )


def factor_returns_from_csv(data: bytes, source: str) -> pl.DataFrame:
    """A factor returns file as ``FACTOR_RETURNS_SCHEMA`` (row numbers are file lines: header = 1)."""
    frame = _parse_dates(_read(data, source, ("session_date", "factor", "value")), source)
    known = (*FACTORS, RISK_FREE_FACTOR)
    for row, factor in enumerate(frame["factor"], start=2):
        if factor not in known:
            raise VendorFileError(
                source, f"row {row}, field factor: {factor!r}: expected one of {', '.join(known)}"
            )
    values = _numbers(
        frame,
        source,
        "value",
        -MAX_ABS_DAILY_RETURN,
        MAX_ABS_DAILY_RETURN,
        f"a daily simple return as a decimal within +-{MAX_ABS_DAILY_RETURN} (0.0012 for 0.12%)",
    )
    frame = frame.with_columns(values.alias("value"))
    _no_duplicates(frame, source, ["session_date", "factor"])
    return frame.select([pl.col(c).cast(t) for c, t in FACTOR_RETURNS_SCHEMA.items()])


def risk_free_from_csv(data: bytes, source: str) -> pl.DataFrame:
    """A risk-free rate file as ``rf`` factor rows (value = annual_rate / 252)."""
    frame = _parse_dates(_read(data, source, ("session_date", "annual_rate")), source)
    rates = _numbers(
        frame,
        source,
        "annual_rate",
        -0.02,
        MAX_ANNUAL_RATE,
        f"an annual rate as a decimal between -0.02 and {MAX_ANNUAL_RATE} (0.0525 for 5.25%)",
    )
    frame = frame.with_columns(
        (rates / TRADING_DAYS).alias("value"), pl.lit(RISK_FREE_FACTOR).alias("factor")
    )
    _no_duplicates(frame, source, ["session_date"])
    return frame.select([pl.col(c).cast(t) for c, t in FACTOR_RETURNS_SCHEMA.items()])


def benchmark_returns_from_csv(data: bytes, source: str) -> pl.DataFrame:
    """A benchmark file as ``BENCHMARK_RETURNS_SCHEMA``."""
    frame = _parse_dates(_read(data, source, ("session_date", "benchmark", "level", "return")), source)
    for row, name in enumerate(frame["benchmark"], start=2):
        if name is None:
            raise VendorFileError(
                source, f"row {row}, field benchmark: required (the index's name, e.g. SPX)"
            )
    levels = _numbers(frame, source, "level", 1e-9, 1e12, "a positive index level")
    returns = _numbers(
        frame,
        source,
        "return",
        -MAX_ABS_DAILY_RETURN,
        MAX_ABS_DAILY_RETURN,
        f"a daily simple return as a decimal within +-{MAX_ABS_DAILY_RETURN}",
    )
    frame = frame.with_columns(levels.alias("level"), returns.alias("return"))
    _no_duplicates(frame, source, ["session_date", "benchmark"])
    return frame.select([pl.col(c).cast(t) for c, t in BENCHMARK_RETURNS_SCHEMA.items()])


def merge(
    frames: list[pl.DataFrame], keys: list[str], schema: dict[str, pl.DataType], extra: tuple[str, ...] = ()
) -> pl.DataFrame:
    """Rows of files in delivery order, a later file's row superseding an earlier one per key.

    ``extra``: columns of the frames kept beside ``schema`` (e.g. the landing key of each row's file).
    """
    if not frames:
        return pl.DataFrame(schema={**schema, **dict.fromkeys(extra, pl.Utf8())})
    stacked = pl.concat([f.with_columns(pl.lit(i).alias("_file")) for i, f in enumerate(frames)])
    latest = stacked.sort("_file").unique(subset=keys, keep="last", maintain_order=True)
    return latest.select(*schema, *extra).sort(keys)
