"""A vendor symbol master file (``landing/symbol_master/*.csv``; layout in docs/vendor-file-layouts.md).

Required columns: symbol, name, exchange, currency, asset_class, sector. Optional: is_synthetic
(default false) and the identity columns of ``SYMBOL_MASTER_SCHEMA`` (issue 21): security_id,
isin, cusip, figi, mic, country, security_type, industry, dividend_currency, valid_from, valid_to.
Derived when absent: cusip from a US/CA isin, mic from the exchange, country from the isin's
prefix, dividend_currency from currency, security_id from the origin key (``core.identifiers``:
the isin, else ``MIC:symbol``; a ticker change needs the same security_id, or the same isin, on
both rows). Identifier check digits are verified: a bad one refuses the whole file with its
file, row, field and what would be valid, like a file without a required column (a master with
a row missing would make that security's bars "unknown symbol" rejects).
"""

from __future__ import annotations

import io

import polars as pl

from wealth_pipeline.core import identifiers
from wealth_pipeline.core.schemas import SYMBOL_MASTER_SCHEMA, conform
from wealth_pipeline.providers.vendor_files import VendorFileError, read_text_csv

REQUIRED = ("symbol", "name", "exchange", "currency", "asset_class", "sector")
MIC = {"NYSE": "XNYS", "NASDAQ": "XNAS", "TSX": "XTSE"}


def symbol_master_from_csv(data: bytes, source: str) -> pl.DataFrame:
    """The file's rows as ``SYMBOL_MASTER_SCHEMA``; ``VendorFileError`` naming file/row/field when invalid."""
    frame = read_text_csv(data, source, tuple(REQUIRED), "symbol master CSV")
    optional = [c for c in SYMBOL_MASTER_SCHEMA if c not in frame.columns and c not in REQUIRED]
    frame = frame.with_columns([pl.lit(None, dtype=pl.Utf8).alias(c) for c in optional])
    frame = frame.with_columns(
        [pl.col(c).str.strip_chars().replace("", None) for c in frame.columns if frame.schema[c] == pl.Utf8]
    )
    for column in ("valid_from", "valid_to"):
        parsed = frame[column].str.to_date("%Y-%m-%d", strict=False)
        bad = frame.with_row_index("row", offset=1).filter(parsed.is_null() & frame[column].is_not_null())
        if bad.height:
            raise VendorFileError(
                source,
                f"row {bad['row'][0]}, field {column}: {bad[column][0]!r} is not a date "
                "(expected YYYY-MM-DD, or empty for an open interval)",
            )
        frame = frame.with_columns(parsed.alias(column))
    flags = frame["is_synthetic"].str.to_lowercase()
    bad_flag = frame.with_row_index("row", offset=1).filter(
        flags.is_not_null() & ~flags.is_in(["true", "false"])
    )
    if bad_flag.height:
        raise VendorFileError(
            source,
            f"row {bad_flag['row'][0]}, field is_synthetic: {bad_flag['is_synthetic'][0]!r} "
            "(expected true, false or empty)",
        )
    frame = frame.with_columns((flags == "true").fill_null(False).alias("is_synthetic"))
    problems = identifiers.frame_problems(frame.drop("security_id"))
    if problems.height:
        row, field, value, reason = problems.row(0)
        more = f" (and {problems.height - 1} more)" if problems.height > 1 else ""
        raise VendorFileError(source, f"row {row}, field {field}: {value!r}: {reason}{more}")
    frame = frame.with_columns(
        pl.coalesce(
            "cusip", pl.col("isin").map_elements(identifiers.cusip_from_isin, return_dtype=pl.Utf8)
        ).alias("cusip"),
        pl.coalesce("mic", pl.col("exchange").replace_strict(MIC, default=None, return_dtype=pl.Utf8)).alias(
            "mic"
        ),
        pl.coalesce("country", pl.col("isin").str.slice(0, 2)).alias("country"),
        pl.coalesce("dividend_currency", "currency").alias("dividend_currency"),
    )
    frame = frame.with_columns(
        pl.coalesce(
            "security_id",
            pl.struct("isin", "mic", "symbol").map_elements(
                lambda r: identifiers.security_id(identifiers.origin_key(r["isin"], r["mic"], r["symbol"])),
                return_dtype=pl.Utf8,
            ),
        ).alias("security_id")
    )
    return conform(frame, SYMBOL_MASTER_SCHEMA)


MEMBERSHIP_FOLDER = "index_membership"
MEMBERSHIP_COLUMNS = ("index_name", "security_id", "valid_from", "valid_to")


def index_membership_from_csv(data: bytes, source: str) -> pl.DataFrame:
    """An index membership file (``landing/index_membership/*.csv``): one row per member interval.

    Columns index_name, security_id (or isin: the id is derived from it), valid_from (required),
    valid_to (empty while a member). Refused whole, naming file/row/field, on a bad date, a bad ISIN
    or an interval that ends before it starts.
    """
    try:
        frame = pl.read_csv(io.BytesIO(data), infer_schema_length=0)
    except Exception as exc:  # polars raises several error types for malformed CSV
        raise VendorFileError(source, f"cannot read index membership CSV: {exc}") from exc
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    if "security_id" not in frame.columns and "isin" in frame.columns:
        problems = identifiers.frame_problems(frame.select("isin"))
        if problems.height:
            row, field, value, reason = problems.row(0)
            raise VendorFileError(source, f"row {row}, field {field}: {value!r}: {reason}")
        frame = frame.with_columns(
            pl.col("isin").map_elements(identifiers.security_id, return_dtype=pl.Utf8).alias("security_id")
        )
    missing = [c for c in MEMBERSHIP_COLUMNS if c not in frame.columns]
    if missing:
        raise VendorFileError(
            source, f"missing required column(s) {missing} (security_id may be given as isin)"
        )
    frame = frame.with_columns([pl.col(c).str.strip_chars().replace("", None) for c in MEMBERSHIP_COLUMNS])
    numbered = frame.with_row_index("row", offset=1)
    for column in ("index_name", "security_id", "valid_from"):
        empty = numbered.filter(pl.col(column).is_null())
        if empty.height:
            raise VendorFileError(source, f"row {empty['row'][0]}, field {column}: required")
    for column in ("valid_from", "valid_to"):
        parsed = frame[column].str.to_date("%Y-%m-%d", strict=False)
        bad = numbered.filter(parsed.is_null() & frame[column].is_not_null())
        if bad.height:
            raise VendorFileError(
                source,
                f"row {bad['row'][0]}, field {column}: {bad[column][0]!r} is not a date "
                "(expected YYYY-MM-DD)",
            )
        frame = frame.with_columns(parsed.alias(column))
    backwards = frame.with_row_index("row", offset=1).filter(pl.col("valid_to") <= pl.col("valid_from"))
    if backwards.height:
        raise VendorFileError(
            source,
            f"row {backwards['row'][0]}, field valid_to: {backwards['valid_to'][0]} is not "
            f"after valid_from {backwards['valid_from'][0]}",
        )
    return frame.select(MEMBERSHIP_COLUMNS)


CHANGES_FOLDER = "identifier_changes"
CHANGES_COLUMNS = ("security_id", "effective_date", "field", "old_value")


def identifier_changes_from_csv(data: bytes, source: str) -> pl.DataFrame:
    """Dated name/ISIN changes (``landing/identifier_changes/*.csv``): the value a field had before a date.

    Columns security_id, effective_date, field (``name`` or ``isin``), old_value. Refused whole,
    naming file/row/field, on a bad date or field, or an old ISIN whose check digit fails.
    """
    frame = read_text_csv(data, source, tuple(CHANGES_COLUMNS), "identifier changes CSV")
    frame = frame.select([pl.col(c).str.strip_chars().replace("", None) for c in CHANGES_COLUMNS])
    parsed = frame["effective_date"].str.to_date("%Y-%m-%d", strict=False)
    for row, values in enumerate(frame.with_columns(parsed.alias("_date")).iter_rows(named=True), start=2):
        if values["security_id"] is None:
            raise VendorFileError(source, f"row {row}, field security_id: required")
        if values["_date"] is None:
            raise VendorFileError(
                source,
                f"row {row}, field effective_date: {values['effective_date']!r} is not a date "
                "(expected YYYY-MM-DD)",
            )
        if values["field"] not in ("name", "isin"):
            raise VendorFileError(
                source, f"row {row}, field field: {values['field']!r}: expected name or isin"
            )
        if (
            values["field"] == "isin"
            and values["old_value"]
            and (problem := identifiers.isin_problem(values["old_value"]))
        ):
            raise VendorFileError(source, f"row {row}, field old_value: {values['old_value']!r}: {problem}")
    return frame.with_columns(parsed.alias("effective_date"))
