"""Parse vendor files dropped in the landing zone: bytes in, good rows and a rejects report out.

Pure: no Dagster, no I/O. The layouts are documented in ``docs/vendor-file-layouts.md``. A problem
with the whole file (empty, not UTF-8, missing column, truncated, unreadable parquet) raises
``VendorFileError`` and nothing is emitted; a problem with a row becomes rejects naming the file, the
row and the field, and the other rows go through. Row rules live in ``core.validation`` so the
processed tier applies exactly the same ones to provider data.

Row numbers in rejects are file LINE numbers for CSV (the header is line 1, so the first data row
is usually line 2; a quoted value spanning lines makes the next row start further down; for
``.csv.gz``, lines of the decompressed text) and 1-based row indexes for parquet. A ``.csv.gz`` file
is hashed as delivered (compressed) and parsed decompressed.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import polars as pl
import pyarrow.parquet as pq

from wealth_pipeline.core.validation import (
    DATASET_DATE_COLUMNS,
    DATASET_SCHEMAS,
    OPTIONAL_COLUMNS,
    REJECT_SCHEMA,
    ROW_FIELD,
    ColumnTypeError,
    MissingColumnsError,
    finish_rejects,
    validate,
)

DATASETS: tuple[str, ...] = tuple(DATASET_SCHEMAS)
FORMATS: tuple[str, ...] = ("csv", "csv.gz", "parquet")  # csv.gz: gzip-compressed CSV

VENDOR_REJECT_SCHEMA: dict[str, pl.DataType] = {
    "file_name": pl.Utf8(),
    "row_number": pl.Int64(),
    "field": pl.Utf8(),
    "value": pl.Utf8(),
    "reason": pl.Utf8(),
    "dataset": pl.Utf8(),
}

_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"


class VendorFileError(ValueError):
    """The file as a whole cannot be used; nothing from it is emitted."""

    def __init__(self, file_name: str, reason: str):
        self.file_name = file_name
        self.reason = reason
        super().__init__(f"vendor file {file_name!r}: {reason}")


@dataclass(frozen=True)
class ParsedFile:
    """What one vendor file yields: schema-conformant good rows, rejects and warnings."""

    file_name: str
    dataset: str
    content_sha256: str
    good: pl.DataFrame
    rejects: pl.DataFrame
    warnings: list[str] = field(default_factory=list)
    # The line (CSV; parquet: 1-based row) of each good row, in ``good``'s order.
    good_lines: pl.Series = field(default_factory=lambda: pl.Series("row_number", [], dtype=pl.Int64))

    @property
    def rejected_rows(self) -> int:
        """Distinct file rows with at least one reject."""
        return self.rejects["row_number"].n_unique() if self.rejects.height else 0

    def dates(self) -> list[dt.date]:
        """Distinct dates the good rows touch (session_date, or ex_date for corporate actions), sorted."""
        column = self.good[DATASET_DATE_COLUMNS[self.dataset]]
        return sorted(column.drop_nulls().unique().to_list())

    def summary(self) -> str:
        """One human line: file, dataset, hash prefix, good/rejected counts, date span, warnings."""
        days = self.dates()
        span = f"{len(days)} date(s) {days[0]}..{days[-1]}" if days else "no dates"
        line = (
            f"{self.file_name} [{self.dataset}, sha256 {self.content_sha256[:12]}]: "
            f"{self.good.height} good row(s), {self.rejected_rows} rejected row(s) "
            f"({self.rejects.height} problem(s)), {span}"
        )
        if self.warnings:
            line += f"; {len(self.warnings)} warning(s): " + " | ".join(self.warnings)
        return line


def infer_dataset(file_name: str) -> str:
    """The dataset of a landing-zone path: its first folder that names a dataset, else the file name.

    ``bars/2024-01.csv`` -> bars; ``vendor_x/fx_rates/jan.parquet`` -> fx_rates;
    ``corporate_actions_2024.csv`` -> corporate_actions.
    """
    parts = [part for part in file_name.replace("\\", "/").split("/") if part]
    for folder in parts[:-1]:
        if folder in DATASETS:
            return folder
    stem = PurePosixPath(parts[-1]).name.lower() if parts else ""
    for dataset in sorted(DATASETS, key=len, reverse=True):
        if stem == dataset or stem.startswith((f"{dataset}.", f"{dataset}_", f"{dataset}-")):
            return dataset
    raise VendorFileError(
        file_name,
        f"cannot tell the dataset: put the file under a folder named one of {', '.join(DATASETS)} "
        "(e.g. bars/2024-01.csv) or pass dataset=",
    )


def file_format(file_name: str) -> str:
    """``csv``, ``csv.gz`` or ``parquet`` from the file extension (case-insensitive).

    Any other extension (``.xlsx``, ``.parquet.gz``, none) is a ``VendorFileError`` naming it.
    """
    suffixes = [s.lower().lstrip(".") for s in PurePosixPath(file_name.replace("\\", "/")).suffixes]
    suffix = (
        ".".join(suffixes[-2:]) if suffixes[-1:] == ["gz"] and len(suffixes) > 1 else "".join(suffixes[-1:])
    )
    if suffix not in FORMATS:
        raise VendorFileError(
            file_name, f"unsupported file type {suffix or '(none)'!r}; expected .csv, .csv.gz or .parquet"
        )
    return suffix


def _gunzip(file_name: str, data: bytes) -> bytes:
    """The CSV inside a ``.csv.gz`` file (stdlib gzip; several gzip members are read as one stream)."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # bad magic, truncated stream, corrupt deflate data
        raise VendorFileError(
            file_name, f"not a readable gzip file ({exc}); expected gzip-compressed CSV"
        ) from None


def _match_columns(
    file_name: str, columns: list[str], schema: Mapping[str, pl.DataType], optional: tuple[str, ...] = ()
) -> tuple[dict[str, str], list[str]]:
    """Map file columns to schema names (trimmed, case-insensitive); also list the extra columns.

    Schema columns in ``optional`` may be absent (the validator fills in their default).
    """
    seen: dict[str, str] = {}
    for column in columns:
        normal = column.strip().lower()
        if normal in seen:
            raise VendorFileError(file_name, f"duplicate column {column!r} in the header")
        seen[normal] = column
    missing = [name for name in schema if name not in seen and name not in optional]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise VendorFileError(
            file_name, f"missing required column(s) {names}; found {columns}, expected {list(schema)}"
        )
    mapping = {seen[name]: name for name in schema if name in seen}
    extras = [column for column in columns if column not in mapping]
    return mapping, extras


def _decode(file_name: str, data: bytes) -> str:
    body = data[len(_UTF8_BOM) :] if data.startswith(_UTF8_BOM) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(data) - len(body))
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise VendorFileError(
            file_name,
            f"not UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} (line {line}, byte {column} of the line)",
        ) from None


def _blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def _read_csv(
    file_name: str, data: bytes, schema: Mapping[str, pl.DataType], optional: tuple[str, ...] = ()
) -> tuple[pl.DataFrame, list[pl.DataFrame], list[str]]:
    """Text frame (schema columns + row_number = line), reject parts for malformed lines, warnings."""
    text = _decode(file_name, data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    bad: list[tuple[int, int, str]] = []  # (line, field count, raw text)
    last: tuple[int, list[str]] | None = None
    end_line = 0
    try:
        for record in reader:
            start, end_line = end_line + 1, reader.line_num
            if _blank(record):
                continue
            if header is None:
                header = record
                continue
            last = (start, record)
            if len(record) == len(header):
                rows.append(record)
                lines.append(start)
            else:
                bad.append((start, len(record), ",".join(record)))
    except csv.Error as exc:
        line = end_line + 1
        if "unexpected end of data" in str(exc):
            raise VendorFileError(
                file_name, f"truncated: unterminated quoted field in the row starting at line {line}"
            ) from None
        raise VendorFileError(file_name, f"malformed CSV in the row starting at line {line}: {exc}") from None
    if header is None:
        raise VendorFileError(file_name, "no header row (the file holds only blank lines)")
    if last is not None and len(last[1]) < len(header):
        raise VendorFileError(
            file_name,
            f"truncated: the last row (line {last[0]}) has {len(last[1])} of {len(header)} fields",
        )
    mapping, extras = _match_columns(file_name, header, schema, optional)
    positions = {name: header.index(column) for column, name in mapping.items()}
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    frame = pl.DataFrame(
        {
            name: pl.Series(name, columns[positions[name]], dtype=pl.Utf8)
            for name in schema
            if name in positions
        }
        | {"row_number": pl.Series("row_number", lines, dtype=pl.Int64)}
    )
    parts = []
    if bad:
        parts.append(
            pl.DataFrame(
                {
                    "row_number": [line for line, _, _ in bad],
                    "field": [ROW_FIELD] * len(bad),
                    "value": [raw for _, _, raw in bad],
                    "reason": [
                        f"row has {count} fields, the header has {len(header)}" for _, count, _ in bad
                    ],
                    "__order": [-1] * len(bad),
                },
                schema=REJECT_SCHEMA | {"__order": pl.Int64()},
            )
        )
    warnings = _extra_warning(extras)
    if not rows and not bad:
        warnings.append("no data rows (header only)")
    return frame, parts, warnings


def _read_parquet(
    file_name: str, data: bytes, schema: Mapping[str, pl.DataType], optional: tuple[str, ...] = ()
) -> tuple[pl.DataFrame, list[str]]:
    """Frame with the schema columns as stored (cast later) + row_number = 1-based row index."""
    if not data.startswith(_PARQUET_MAGIC):
        raise VendorFileError(file_name, "not a parquet file (no PAR1 magic at the start)")
    if len(data) < 12 or not data.endswith(_PARQUET_MAGIC):
        raise VendorFileError(
            file_name, "truncated parquet file: the footer (PAR1 magic at the end) is missing"
        )
    try:
        table = pq.read_table(io.BytesIO(data))
        frame = pl.from_arrow(table)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise VendorFileError(file_name, f"unreadable parquet: {exc}") from None
    assert isinstance(frame, pl.DataFrame)
    mapping, extras = _match_columns(file_name, frame.columns, schema, optional)
    frame = frame.select(
        *[pl.col(column).alias(name) for column, name in mapping.items()],
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("row_number"),
    )
    warnings = _extra_warning(extras)
    if frame.is_empty():
        warnings.append("no data rows")
    return frame, warnings


def _extra_warning(extras: list[str]) -> list[str]:
    if not extras:
        return []
    return [f"ignored extra column(s) {', '.join(repr(column) for column in extras)}"]


def parse_vendor_file(
    file_name: str,
    data: bytes,
    *,
    dataset: str | None = None,
    known_symbols: Mapping[str, str] | None = None,
    is_session: Callable[[str, dt.date], bool] | None = None,
) -> ParsedFile:
    """Parse one landing-zone file into good rows (the dataset's schema exactly) and rejects.

    ``dataset`` is inferred from the path when not given. ``known_symbols`` (symbol -> listing
    exchange) rejects unknown symbols; with ``is_session(exchange, date)`` too, dates that are not
    sessions on the symbol's exchange are rejected (fx_rates only need a weekday). Raises
    ``VendorFileError`` for problems with the whole file.
    """
    if dataset is None:
        dataset = infer_dataset(file_name)
    elif dataset not in DATASETS:
        raise VendorFileError(
            file_name, f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}"
        )
    fmt = file_format(file_name)
    if not data:
        raise VendorFileError(file_name, "empty file (0 bytes)")
    schema, optional = DATASET_SCHEMAS[dataset], OPTIONAL_COLUMNS.get(dataset, ())
    if fmt == "csv.gz":
        text = _gunzip(file_name, data)
        if not text:
            raise VendorFileError(file_name, "empty file (0 bytes once decompressed)")
        frame, parts, warnings = _read_csv(file_name, text, schema, optional)
    elif fmt == "csv":
        frame, parts, warnings = _read_csv(file_name, data, schema, optional)
    else:
        (frame, warnings), parts = _read_parquet(file_name, data, schema, optional), []
    try:
        result = validate(dataset, frame, known_symbols=known_symbols, is_session=is_session)
    except (MissingColumnsError, ColumnTypeError) as exc:  # a parquet column of a non-scalar type
        raise VendorFileError(file_name, str(exc)) from None
    if result.rejects.height:
        ordered = result.rejects.with_columns(pl.lit(0, dtype=pl.Int64).alias("__order"))
        parts.append(ordered)
    rejects = finish_rejects(parts).select(
        pl.lit(file_name, dtype=pl.Utf8).alias("file_name"),
        *REJECT_SCHEMA,
        pl.lit(dataset, dtype=pl.Utf8).alias("dataset"),
    )
    warnings += [_file_wording(w, fmt) for w in result.warnings]  # content_sha256: the bytes as delivered
    return ParsedFile(
        file_name=file_name,
        dataset=dataset,
        content_sha256=hashlib.sha256(data).hexdigest(),
        good=result.good,
        rejects=rejects,
        warnings=warnings,
        good_lines=result.good_row_numbers,
    )


def _file_wording(warning: str, fmt: str) -> str:
    """Say "line" for CSV row numbers in validation warnings."""
    return warning.replace("(row_number ", "(line " if fmt in ("csv", "csv.gz") else "(row ")


def empty_rejects() -> pl.DataFrame:
    """An empty rejects frame with ``VENDOR_REJECT_SCHEMA``."""
    return pl.DataFrame(schema=VENDOR_REJECT_SCHEMA)


def read_text_csv(data: bytes, source: str, required: tuple[str, ...], what: str = "CSV") -> pl.DataFrame:
    """A vendor CSV with every cell as text and headers trimmed and lower-cased; ``VendorFileError``
    naming ``source`` when it cannot be read or lacks a ``required`` column (the list says what is valid)."""
    try:
        frame = pl.read_csv(io.BytesIO(data), infer_schema_length=0)
    except Exception as exc:  # polars raises several error types for malformed CSV
        raise VendorFileError(source, f"cannot read {what}: {exc}") from exc
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise VendorFileError(source, f"missing required column(s) {missing}; expected {list(required)}")
    return frame
