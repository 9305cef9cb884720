"""Row-level validation of market data frames: split a frame into good rows and a rejects report.

The same rules guard vendor files in the landing zone (``providers.vendor_files``) and provider data
entering the processed tier, so a bad row is described the same way wherever it is caught. Every
rule is a vectorized polars expression; Python only runs per *distinct* (exchange, date) pair for
the calendar check and per rejected row when reject messages are built.

Input frames carry the columns of a schema from ``core.schemas`` either already typed (provider
data) or as text (vendor CSV, parquet written with string columns); text is parsed here so that a
value that is not a number, an integer or an ISO date becomes a reject naming the row and field
instead of an exception. Extra columns are ignored. A ``row_number`` column, when present, is used
to name rows in the report; otherwise rows are numbered 1, 2, ... in input order.

The good frame has exactly the schema's columns, order and dtypes, and keeps the input order.
Rejects have ``REJECT_SCHEMA``: one row per (input row, offending field); several failed rules on
the same field are joined with "; " in ``reason``; ``value`` is the field's input value as text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from wealth_pipeline.core.schemas import (
    BARS_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    DISTRIBUTION_TYPES,
    FX_RATES_SCHEMA,
)

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "row_number": pl.Int64(),
    "field": pl.Utf8(),
    "value": pl.Utf8(),
    "reason": pl.Utf8(),
}

# ``field`` of a reject about the whole row (e.g. a CSV line with the wrong number of fields).
ROW_FIELD = "(row)"

ACTION_TYPES: tuple[str, ...] = ("split", "dividend")

# Sane FX bounds per (base, quote): rate = units of quote for one unit of base. The inverse pair is
# derived (1/high, 1/low); a pair with base == quote must have rate 1; any other pair falls back to
# DEFAULT_FX_BOUNDS. A rate must always be > 0.
FX_RATE_BOUNDS: dict[tuple[str, str], tuple[float, float]] = {
    ("USD", "CAD"): (0.5, 3.0),
    ("EUR", "USD"): (0.5, 2.5),
    ("GBP", "USD"): (0.7, 3.0),
    ("USD", "JPY"): (50.0, 400.0),
    ("USD", "CHF"): (0.4, 2.0),
    ("AUD", "USD"): (0.3, 1.5),
    ("EUR", "CAD"): (0.7, 3.5),
    ("GBP", "CAD"): (1.0, 4.0),
}
DEFAULT_FX_BOUNDS: tuple[float, float] = (1e-6, 1e6)

# Unique key of each dataset: a second row with the same key is a duplicate.
BARS_KEY: tuple[str, ...] = ("symbol", "session_date")
CORPORATE_ACTIONS_KEY: tuple[str, ...] = ("symbol", "ex_date", "action_type", "distribution_type")
FX_RATES_KEY: tuple[str, ...] = ("session_date", "base_currency", "quote_currency")

# Columns a frame or vendor file may leave out; the validator fills in their default per row.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"corporate_actions": ("distribution_type",)}

_RN = "row_number"
# Integers written with a decimal point or an exponent are exact below 2**53; as digits, the whole
# 64-bit range is read exactly.
_EXACT_FLOAT_INT = 2.0**53
INTEGER_RANGE_REASON = f"out of range: a whole number of at most {2**63 - 1} in digits, or {2**53} with a decimal point or exponent"
_CURRENCY_PATTERN = r"^[A-Z]{3}$"
_ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_MAX_LISTED = 10  # row numbers listed in one message

IsSession = Callable[[str, dt.date], bool]


class MissingColumnsError(ValueError):
    """The frame lacks columns of the schema it is validated against."""

    def __init__(self, missing: list[str], expected: list[str]):
        self.missing = missing
        self.expected = expected
        names = ", ".join(repr(name) for name in missing)
        super().__init__(f"missing required column(s) {names}; expected columns {expected}")


class ColumnTypeError(ValueError):
    """A column's dtype can never hold the schema's type (e.g. a list where a number is expected)."""

    def __init__(self, column: str, dtype: pl.DataType, expected: pl.DataType):
        self.column = column
        super().__init__(f"column {column!r} has type {dtype}, which cannot be read as {expected}")


@dataclass(frozen=True)
class ValidationResult:
    """Rows that passed every rule (``good``) and one reject per failing (row, field).

    ``good_row_numbers``: the input ``row_number`` of each good row, in ``good``'s order (a vendor
    file's line, so a row judged bad later, e.g. a spike, can still name its file and line).
    """

    good: pl.DataFrame
    rejects: pl.DataFrame
    warnings: list[str] = field(default_factory=list)
    good_row_numbers: pl.Series = field(default_factory=lambda: pl.Series(_RN, [], dtype=pl.Int64))

    @property
    def rejected_rows(self) -> int:
        """How many distinct input rows were rejected."""
        return self.rejects[_RN].n_unique() if self.rejects.height else 0


@dataclass(frozen=True)
class _Check:
    """One rule: rows where ``fail`` is true get a reject on ``field`` with ``reason``.

    ``reason`` is evaluated only on the failing rows, so it may be expensive (windows, formatting).
    """

    field: str
    fail: pl.Expr
    reason: pl.Expr


def _raw(name: str) -> str:
    return f"__raw__{name}"


def _terr(name: str) -> str:
    return f"__terr__{name}"


def _sig(name: str) -> str:
    return f"__sig__{name}"


def _text(expr: pl.Expr) -> pl.Expr:
    """A value as text for messages; "null" when missing."""
    return expr.cast(pl.Utf8, strict=False).fill_null("null")


def _none(dtype: pl.DataType) -> pl.Expr:
    return pl.lit(None, dtype=dtype)


def _clean_text(expr: pl.Expr) -> pl.Expr:
    """Strip surrounding whitespace; an empty string is a missing value."""
    stripped = expr.str.strip_chars()
    return pl.when(stripped.str.len_chars() == 0).then(_none(pl.Utf8())).otherwise(stripped)


def _finite_reason(value: pl.Expr) -> pl.Expr:
    return pl.when(value.is_nan() | value.is_infinite()).then(pl.lit("not a finite number"))


def _coerce(raw: pl.Expr, source: pl.DataType, target: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """Typed value and type-error reason (null when fine) of ``raw`` (dtype ``source``) as ``target``."""
    if source == pl.Null():
        return _none(target), _none(pl.Utf8())
    if isinstance(source, pl.Categorical | pl.Enum):
        raw, source = raw.cast(pl.Utf8), pl.Utf8()
    is_text = source == pl.Utf8()
    present = raw.is_not_null()

    if target == pl.Utf8():
        value = _clean_text(raw if is_text else raw.cast(pl.Utf8, strict=False))
        reason = pl.when(present & value.is_null() & ~pl.lit(is_text)).then(pl.lit(f"not text ({source})"))
        return value, reason

    if target == pl.Float64():
        if is_text:
            text = _clean_text(raw)
            value = text.cast(pl.Float64, strict=False)
            reason = (
                pl.when(text.is_not_null() & value.is_null())
                .then(pl.lit("not a number"))
                .when(value.is_nan() | value.is_infinite())
                .then(pl.lit("not a finite number"))
            )
            return value, reason
        if source.is_numeric():
            value = raw.cast(pl.Float64, strict=False)
            reason = (
                pl.when(present & value.is_null())
                .then(pl.lit("not a number"))
                .otherwise(_finite_reason(value))
            )
            return value, reason
        return _none(target), pl.when(present).then(pl.lit(f"not a number ({source})"))

    if target == pl.Int64():
        if is_text:
            text = _clean_text(raw)
            as_int = text.cast(pl.Int64, strict=False)
            as_float = text.cast(pl.Float64, strict=False)
        elif source.is_integer():
            value = raw.cast(pl.Int64, strict=False)
            return value, pl.when(present & value.is_null()).then(pl.lit("out of the 64-bit integer range"))
        elif source.is_numeric():
            text, as_int, as_float = raw, _none(pl.Int64()), raw.cast(pl.Float64, strict=False)
        else:
            return _none(target), pl.when(present).then(pl.lit(f"not an integer ({source})"))
        whole = as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < _EXACT_FLOAT_INT)
        value = pl.coalesce(as_int, pl.when(whole).then(as_float.cast(pl.Int64, strict=False)))
        reason = pl.when(text.is_not_null() & value.is_null()).then(
            pl.when(as_float.is_nan() | as_float.is_infinite())
            .then(pl.lit("not a finite number"))
            .when(as_float.abs() >= _EXACT_FLOAT_INT)
            .then(pl.lit(INTEGER_RANGE_REASON))
            .when(as_float.is_not_null())
            .then(pl.lit("not a whole number"))
            .otherwise(pl.lit("not an integer"))
        )
        return value, reason

    if target == pl.Date():
        if is_text:
            text = _clean_text(raw)
            iso = text.str.contains(_ISO_DATE_PATTERN)
            value = pl.when(iso).then(text.str.to_date("%Y-%m-%d", strict=False))
            reason = pl.when(text.is_not_null() & value.is_null()).then(
                pl.lit("not an ISO date (YYYY-MM-DD)")
            )
            return value, reason
        if source == pl.Date():
            return raw, _none(pl.Utf8())
        if isinstance(source, pl.Datetime):
            midnight = (
                (raw.dt.hour() == 0)
                & (raw.dt.minute() == 0)
                & (raw.dt.second() == 0)
                & (raw.dt.nanosecond() == 0)
            )
            value = pl.when(midnight).then(raw.dt.date())
            return value, pl.when(present & ~midnight).then(pl.lit("not a date (has a time of day)"))
        return _none(target), pl.when(present).then(pl.lit(f"not a date ({source})"))

    raise TypeError(f"no coercion to {target}")  # pragma: no cover - schemas only use the types above


def _readable(dtype: pl.DataType) -> bool:
    """Scalar types a column may have: text, numbers, booleans, dates and times, or all-null."""
    scalar = (pl.Utf8, pl.Categorical, pl.Enum, pl.Boolean, pl.Date, pl.Datetime, pl.Null, pl.Decimal)
    return dtype.is_numeric() or isinstance(dtype, scalar)


def _typed_frame(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Row numbers, raw input columns, typed columns (schema names) and type-error reasons."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, list(schema))
    if _RN in frame.columns:
        row_number = pl.col(_RN).cast(pl.Int64)
    else:
        row_number = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    for name, dtype in schema.items():
        if not _readable(frame.schema[name]):
            raise ColumnTypeError(name, frame.schema[name], dtype)
    raw = frame.select(row_number.alias(_RN), *[pl.col(name).alias(_raw(name)) for name in schema])
    values: list[pl.Expr] = []
    for name, dtype in schema.items():
        value, reason = _coerce(pl.col(_raw(name)), frame.schema[name], dtype)
        values += [value.cast(dtype).alias(name), reason.cast(pl.Utf8).alias(_terr(name))]
    # A value with a type error (e.g. NaN) is null for the other rules: they judge valid values only.
    return raw.with_columns(values).with_columns(
        pl.when(pl.col(_terr(name)).is_null()).then(pl.col(name)).alias(name) for name in schema
    )


def _drop_exact_duplicates(
    work: pl.DataFrame, schema: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame, list[str]]:
    """Keep the first of rows that are identical after parsing (e.g. "1.0" and "1.00" are equal)."""
    signatures = [
        pl.when(pl.col(_terr(name)).is_null())
        .then(pl.col(name).cast(pl.Utf8))
        .otherwise(pl.concat_str(pl.lit("\x00"), pl.col(_raw(name)).cast(pl.Utf8, strict=False)))
        .alias(_sig(name))
        for name in schema
    ]
    work = work.with_columns(signatures)
    first = pl.struct([_sig(name) for name in schema]).is_first_distinct()
    dropped = work.filter(~first)[_RN]
    if dropped.is_empty():
        return work, []
    listed = ", ".join(str(n) for n in dropped.head(_MAX_LISTED).to_list())
    more = f" and {dropped.len() - _MAX_LISTED} more" if dropped.len() > _MAX_LISTED else ""
    warning = (
        f"dropped {dropped.len()} exact duplicate row(s) (row_number {listed}{more}); "
        "the first occurrence of each is kept"
    )
    return work.filter(first), [warning]


def _duplicate_checks(schema: Mapping[str, pl.DataType], key: tuple[str, ...]) -> list[_Check]:
    """Rows sharing a key but differing elsewhere: every occurrence is rejected on each differing field."""
    key_ok = pl.all_horizontal([pl.col(name).is_not_null() for name in key])
    shared = key_ok & (pl.len().over(key) > 1)
    key_text = pl.concat_str([_text(pl.col(name)) for name in key], separator=", ")
    rows = pl.col(_RN).sort().head(_MAX_LISTED).cast(pl.Utf8).implode().list.join(", ").over(key)
    checks = []
    for name in schema:
        if name in key:
            continue
        differs = shared & (pl.col(_sig(name)).n_unique().over(key) > 1)
        reason = pl.format(
            "conflicting duplicate: rows {} share key ({}) with different {}",
            rows,
            key_text,
            pl.lit(name),
        )
        checks.append(_Check(name, differs, reason))
    return checks


def _type_and_null_checks(schema: Mapping[str, pl.DataType], required: Mapping[str, pl.Expr]) -> list[_Check]:
    """Type errors on every field; nulls on fields required (possibly conditionally) by ``required``."""
    checks = [_Check(name, pl.col(_terr(name)).is_not_null(), pl.col(_terr(name))) for name in schema]
    for name, condition in required.items():
        fail = pl.col(name).is_null() & pl.col(_terr(name)).is_null() & condition
        checks.append(_Check(name, fail, pl.lit("required field is empty")))
    return checks


def _currency_check(name: str) -> _Check:
    fail = ~pl.col(name).str.contains(_CURRENCY_PATTERN)
    return _Check(name, fail, pl.format("currency code {} is not 3 uppercase letters", _text(pl.col(name))))


def _symbol_checks(
    work: pl.DataFrame,
    date_field: str,
    known_symbols: Mapping[str, str] | None,
    is_session: IsSession | None,
) -> tuple[list[_Check], list[str]]:
    """Unknown symbols, and dates that are not sessions on the symbol's listing exchange."""
    if known_symbols is None:
        warnings = []
        if is_session is not None:
            warnings.append(f"{date_field} not checked against exchange calendars: no symbol master given")
        return [], warnings
    symbols = list(known_symbols)
    checks = [
        _Check(
            "symbol",
            pl.col("symbol").is_not_null() & ~pl.col("symbol").is_in(symbols),
            pl.format("unknown symbol {} (not in the symbol master)", _text(pl.col("symbol"))),
        )
    ]
    if is_session is None:
        return checks, []
    exchange = pl.col("symbol").replace_strict(dict(known_symbols), default=None, return_dtype=pl.Utf8)
    pairs = work.select(exchange.alias("exchange"), pl.col(date_field).alias("day")).drop_nulls().unique()
    closed: dict[str, list[dt.date]] = {}
    broken: dict[str, str] = {}
    for exch, day in pairs.iter_rows():  # one call per distinct (exchange, date), not per row
        try:
            if not is_session(exch, day):
                closed.setdefault(exch, []).append(day)
        except Exception as exc:  # e.g. an exchange without a calendar in the symbol master
            broken[exch] = str(exc)
    for exch, days in sorted(closed.items()):
        fail = (exchange == exch) & pl.col(date_field).is_in(days)
        checks.append(_Check(date_field, fail, pl.lit(f"not a trading session on {exch}")))
    for exch, error in sorted(broken.items()):
        fail = (exchange == exch) & pl.col(date_field).is_not_null()
        checks.append(_Check(date_field, fail, pl.lit(f"cannot check sessions on {exch}: {error}")))
    return checks, []


def _run(
    frame: pl.DataFrame,
    schema: Mapping[str, pl.DataType],
    key: tuple[str, ...],
    required: Mapping[str, pl.Expr],
    rules: Callable[[pl.DataFrame], tuple[list[_Check], list[str]]],
    normalize: Mapping[str, pl.Expr] | None = None,
) -> ValidationResult:
    """Type the frame, drop exact duplicates, evaluate every check, split good rows from rejects.

    ``normalize`` (field -> expression over the typed columns) replaces a field's typed value where
    it has no type error (defaults for empty values, canonical case), before duplicates are judged.
    """
    work = _typed_frame(frame, schema)
    if normalize:
        work = work.with_columns(
            pl.when(pl.col(_terr(name)).is_null())
            .then(default)
            .otherwise(pl.col(name))
            .cast(schema[name])
            .alias(name)
            for name, default in normalize.items()
        )
    work, warnings = _drop_exact_duplicates(work, schema)
    extra_checks, extra_warnings = rules(work)
    checks = _type_and_null_checks(schema, required) + extra_checks + _duplicate_checks(schema, key)
    flags = [check.fail.fill_null(False).alias(f"__fail{i}") for i, check in enumerate(checks)]
    work = work.with_columns(flags)
    order = {name: i for i, name in enumerate(schema)}
    parts = []
    for i, check in enumerate(checks):
        failing = work.filter(pl.col(f"__fail{i}"))
        if failing.is_empty():
            continue
        parts.append(
            failing.select(
                pl.col(_RN),
                pl.lit(check.field, dtype=pl.Utf8).alias("field"),
                pl.col(_raw(check.field)).cast(pl.Utf8, strict=False).alias("value"),
                check.reason.cast(pl.Utf8).alias("reason"),
                pl.lit(order[check.field] * 1000 + i, dtype=pl.Int64).alias("__order"),
            )
        )
    rejects = finish_rejects(parts)
    rejected = (
        pl.any_horizontal([pl.col(f"__fail{i}") for i in range(len(checks))]) if checks else pl.lit(False)
    )
    kept = work.filter(~rejected)
    good = kept.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    return ValidationResult(
        good=good, rejects=rejects, warnings=warnings + extra_warnings, good_row_numbers=kept[_RN]
    )


def finish_rejects(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate reject parts (REJECT_SCHEMA plus an ``__order`` column) into one row per (row, field).

    Reasons for the same (row, field) are joined with "; " in ``__order`` order; the result is sorted
    by row number, then field order.
    """
    if not parts:
        return pl.DataFrame(schema=REJECT_SCHEMA)
    return (
        pl.concat(parts, how="vertical_relaxed")
        .sort([_RN, "__order"], maintain_order=True)
        .group_by([_RN, "field"], maintain_order=True)
        .agg(pl.col("value").first(), pl.col("reason").str.join("; "))
        .select([pl.col(name).cast(dtype) for name, dtype in REJECT_SCHEMA.items()])
    )


def validate_bars(
    frame: pl.DataFrame,
    *,
    known_symbols: Mapping[str, str] | None = None,
    is_session: IsSession | None = None,
) -> ValidationResult:
    """Validate daily bars (``BARS_SCHEMA``).

    Rules: every field present and typed; open/high/low/close > 0; high >= low; high >= max(open,
    close); low <= min(open, close); volume >= 0; currency is 3 uppercase letters; symbol in
    ``known_symbols`` (symbol -> listing exchange) when given; session_date a session of the symbol's
    exchange per ``is_session(exchange, date)`` when both are given; (symbol, session_date) unique.
    """
    required = {name: pl.lit(True) for name in BARS_SCHEMA}

    def rules(work: pl.DataFrame) -> tuple[list[_Check], list[str]]:
        o, h, lo, c = (pl.col(name) for name in ("open", "high", "low", "close"))
        checks = [
            _Check(name, pl.col(name) <= 0, pl.lit("price must be > 0"))
            for name in ("open", "high", "low", "close")
        ]
        checks += [
            _Check("high", h < lo, pl.format("high is below low {}", _text(lo))),
            _Check(
                "high",
                h < pl.max_horizontal(o, c),
                pl.format("high is below max(open {}, close {})", _text(o), _text(c)),
            ),
            _Check(
                "low",
                lo > pl.min_horizontal(o, c),
                pl.format("low is above min(open {}, close {})", _text(o), _text(c)),
            ),
            _Check("volume", pl.col("volume") < 0, pl.lit("volume must be >= 0")),
            _currency_check("currency"),
        ]
        symbol_checks, warnings = _symbol_checks(work, "session_date", known_symbols, is_session)
        return checks + symbol_checks, warnings

    return _run(frame, BARS_SCHEMA, BARS_KEY, required, rules)


def validate_corporate_actions(
    frame: pl.DataFrame,
    *,
    known_symbols: Mapping[str, str] | None = None,
    is_session: IsSession | None = None,
) -> ValidationResult:
    """Validate corporate actions (``CORPORATE_ACTIONS_SCHEMA``).

    Rules: symbol, ex_date, action_type present; action_type is "split" or "dividend"; a split has
    ratio > 0 (amount and currency may be empty); a dividend has amount >= 0 and a currency (ratio
    may be empty); a currency, when given, is 3 uppercase letters; symbol known and ex_date a session
    of its exchange as for bars; distribution_type (case-insensitive; the column may be absent) one
    of ``DISTRIBUTION_TYPES[action_type]``, empty meaning the first (regular for a dividend, split
    for a split); (symbol, ex_date, action_type, distribution_type) unique, so a regular and a
    special dividend may share an ex-date while two regular ones with different amounts conflict.
    """
    if "distribution_type" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("distribution_type"))
    split = pl.col("action_type") == "split"
    dividend = pl.col("action_type") == "dividend"
    required = {
        "symbol": pl.lit(True),
        "ex_date": pl.lit(True),
        "action_type": pl.lit(True),
        "ratio": split,
        "amount": dividend,
        "currency": dividend,
    }

    def rules(work: pl.DataFrame) -> tuple[list[_Check], list[str]]:
        known = ", ".join(ACTION_TYPES)
        checks = [
            _Check(
                "action_type",
                ~pl.col("action_type").is_in(list(ACTION_TYPES)),
                pl.format(
                    "unknown action_type {}; expected one of {}", _text(pl.col("action_type")), pl.lit(known)
                ),
            ),
            _Check("ratio", split & (pl.col("ratio") <= 0), pl.lit("split ratio must be > 0")),
            _Check("amount", dividend & (pl.col("amount") < 0), pl.lit("dividend amount must be >= 0")),
            _currency_check("currency"),
        ]
        for action, kinds in DISTRIBUTION_TYPES.items():
            checks.append(
                _Check(
                    "distribution_type",
                    (pl.col("action_type") == action) & ~pl.col("distribution_type").is_in(list(kinds)),
                    pl.format(
                        "distribution_type {} is not valid for a {}; expected one of {} (empty: {})",
                        _text(pl.col(_raw("distribution_type"))),
                        pl.lit(action),
                        pl.lit(", ".join(kinds)),
                        pl.lit(kinds[0]),
                    ),
                )
            )
        symbol_checks, warnings = _symbol_checks(work, "ex_date", known_symbols, is_session)
        return checks + symbol_checks, warnings

    kind = pl.col("distribution_type")
    normalize = {
        "distribution_type": pl.when(kind.is_null())
        .then(
            pl.col("action_type").replace_strict(
                {action: kinds[0] for action, kinds in DISTRIBUTION_TYPES.items()},
                default=None,
                return_dtype=pl.Utf8,
            )
        )
        .otherwise(kind.str.to_lowercase())
    }
    return _run(frame, CORPORATE_ACTIONS_SCHEMA, CORPORATE_ACTIONS_KEY, required, rules, normalize)


def fx_bounds_table(
    bounds: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> dict[str, tuple[float, float]]:
    """Map "BASE/QUOTE" -> (low, high) for the given pairs and their inverses (given pairs win)."""
    table: dict[str, tuple[float, float]] = {}
    source = FX_RATE_BOUNDS if bounds is None else bounds
    for (base, quote), (low, high) in source.items():
        if not 0 < low <= high:
            raise ValueError(f"FX bounds for {base}/{quote} must satisfy 0 < low <= high, got {(low, high)}")
        table.setdefault(f"{quote}/{base}", (1.0 / high, 1.0 / low))
    for (base, quote), (low, high) in source.items():
        table[f"{base}/{quote}"] = (float(low), float(high))
    return table


def validate_fx_rates(
    frame: pl.DataFrame,
    *,
    bounds: Mapping[tuple[str, str], tuple[float, float]] | None = None,
    default_bounds: tuple[float, float] = DEFAULT_FX_BOUNDS,
) -> ValidationResult:
    """Validate FX rates (``FX_RATES_SCHEMA``).

    Rules: every field present and typed; currencies are 3 uppercase letters; rate > 0 and within the
    pair's sane bounds (``bounds``, default ``FX_RATE_BOUNDS`` plus inverses, else ``default_bounds``;
    rate exactly 1 when base == quote); session_date is a weekday (FX trades every weekday, whatever
    the stock exchanges do); (session_date, base_currency, quote_currency) unique.
    """
    table = fx_bounds_table(bounds)
    required = {name: pl.lit(True) for name in FX_RATES_SCHEMA}

    def rules(work: pl.DataFrame) -> tuple[list[_Check], list[str]]:
        base, quote, rate = pl.col("base_currency"), pl.col("quote_currency"), pl.col("rate")
        pair = pl.concat_str(base, pl.lit("/"), quote)
        same = base == quote
        low = (
            pl.when(same)
            .then(1.0)
            .otherwise(pair.replace_strict({k: v[0] for k, v in table.items()}, default=default_bounds[0]))
        )
        high = (
            pl.when(same)
            .then(1.0)
            .otherwise(pair.replace_strict({k: v[1] for k, v in table.items()}, default=default_bounds[1]))
        )
        checks = [
            _currency_check("base_currency"),
            _currency_check("quote_currency"),
            _Check("rate", rate <= 0, pl.lit("rate must be > 0")),
            _Check(
                "rate",
                (rate > 0) & ((rate < low) | (rate > high)),
                pl.format("rate outside the sane range [{}, {}] for {}", _text(low), _text(high), pair),
            ),
            _Check(
                "session_date",
                pl.col("session_date").dt.weekday() > 5,
                pl.format(
                    "{} is a weekend day; FX rates are expected on weekdays", _text(pl.col("session_date"))
                ),
            ),
        ]
        return checks, []

    return _run(frame, FX_RATES_SCHEMA, FX_RATES_KEY, required, rules)


DATASET_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "bars": BARS_SCHEMA,
    "corporate_actions": CORPORATE_ACTIONS_SCHEMA,
    "fx_rates": FX_RATES_SCHEMA,
}

# The date column of each dataset: what a row is partitioned by.
DATASET_DATE_COLUMNS: dict[str, str] = {
    "bars": "session_date",
    "corporate_actions": "ex_date",
    "fx_rates": "session_date",
}


def validate(
    dataset: str,
    frame: pl.DataFrame,
    *,
    known_symbols: Mapping[str, str] | None = None,
    is_session: IsSession | None = None,
    **options: Any,
) -> ValidationResult:
    """Validate ``frame`` with the rules of ``dataset`` (bars, corporate_actions or fx_rates).

    ``known_symbols`` and ``is_session`` do not apply to fx_rates and are ignored there.
    """
    if dataset == "bars":
        return validate_bars(frame, known_symbols=known_symbols, is_session=is_session, **options)
    if dataset == "corporate_actions":
        return validate_corporate_actions(
            frame, known_symbols=known_symbols, is_session=is_session, **options
        )
    if dataset == "fx_rates":
        return validate_fx_rates(frame, **options)
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASET_SCHEMAS)}")
