"""Split and dividend adjustment of raw daily bars: pure, vectorized polars.

Convention (backward, CRSP-style): the most recent bar of every symbol is left as traded (factor 1)
and history is scaled so that the adjusted close-to-close return through a corporate action equals
the holder's total return with dividends reinvested at the ex-date opening price.

* A split with ``ratio`` r (new shares per old share; 4.0 for a 4-for-1, 0.1 for a 1-for-10 reverse
  split) multiplies the prices of every session BEFORE its ex_date by ``1 / r`` (``split_factor``).
* A cash dividend of ``amount`` multiplies the prices of every session BEFORE its ex_date by
  ``1 - amount / c`` (``dividend_factor``), where ``c`` is the raw close of the symbol's last bar
  before the ex_date. The amount is per share as held on that bar (the pre-split basis if a split has
  the same ex_date).
* ``adj_factor = split_factor * dividend_factor``; ``adj_open/high/low/close = raw * adj_factor``;
  ``adj_volume = volume / split_factor`` (a 4-for-1 split multiplies earlier volume by 4; dividends
  do not change volume). ``adj_volume`` is Float64 because fractional ratios give fractional shares.
* Several actions on the same symbol multiply; both factors are products over every action whose
  ex_date is strictly after the bar's session_date.

Edge cases:
* An ex_date that is not one of the symbol's bars (a holiday, a missing bar) still applies to the
  bars strictly before it; the dividend uses the close of the last bar before the ex_date.
* An action with no bar before its ex_date (it predates the history) changes nothing.
* An action whose ex_date is after the symbol's last bar is not yet reflected (it changes nothing),
  so the latest bar always has factor 1 and the result depends only on the bars given.
* Actions on symbols that have no bars are ignored; bars of symbols without actions get factor 1.
* Bad input raises ``AdjustmentInputError`` naming the frame, row and field: missing columns,
  nulls, duplicate (symbol, session_date) bars, non-positive closes, unknown action types, a split
  ratio that is not a positive finite number, a negative dividend, or a dividend not smaller than
  the close it is measured against.
"""

from __future__ import annotations

import polars as pl

from wealth_pipeline.core.schemas import CORPORATE_ACTIONS_SCHEMA

ACTION_TYPES: tuple[str, ...] = ("split", "dividend")
FACTOR_COLUMNS: tuple[str, ...] = ("split_factor", "dividend_factor", "adj_factor")
ADJUSTED_COLUMNS: tuple[str, ...] = (
    *FACTOR_COLUMNS,
    "adj_open",
    "adj_high",
    "adj_low",
    "adj_close",
    "adj_volume",
)


class AdjustmentInputError(ValueError):
    """Bars or corporate actions that cannot be adjusted; the message names the row and field."""


def _require_columns(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise AdjustmentInputError(f"{what}: missing columns {missing}; got {frame.columns}")


def _first_bad_row(frame: pl.DataFrame, condition: pl.Expr) -> dict | None:
    bad = frame.with_row_index("_row").filter(condition)
    return bad.row(0, named=True) if bad.height else None


def _cast(frame: pl.DataFrame, dtypes: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    try:
        return frame.with_columns([pl.col(name).cast(dtype) for name, dtype in dtypes.items()])
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise AdjustmentInputError(f"{what}: cannot cast columns to {dtypes}: {exc}") from exc


def _validated_bars(bars: pl.DataFrame, price_columns: tuple[str, ...]) -> pl.DataFrame:
    what = "bars"
    columns = ("symbol", "session_date", *price_columns)
    _require_columns(bars, columns, what)
    dtypes: dict[str, pl.DataType] = {"symbol": pl.Utf8(), "session_date": pl.Date()}
    dtypes.update({name: pl.Float64() for name in price_columns if name != "volume"})
    frame = _cast(bars, dtypes, what)
    for name in columns:
        row = _first_bad_row(frame, pl.col(name).is_null())
        if row is not None:
            raise AdjustmentInputError(f"{what} row {row['_row']}: field {name!r} is null")
    row = _first_bad_row(frame, ~(pl.col("close").is_finite() & (pl.col("close") > 0)))
    if row is not None:
        raise AdjustmentInputError(
            f"{what} row {row['_row']} (symbol {row['symbol']!r}, session_date {row['session_date']}): "
            f"field 'close' must be a positive finite price, got {row['close']!r}"
        )
    row = _first_bad_row(frame, ~pl.struct("symbol", "session_date").is_first_distinct())
    if row is not None:
        raise AdjustmentInputError(
            f"{what} row {row['_row']}: duplicate bar for symbol {row['symbol']!r} on "
            f"{row['session_date']}; deduplicate before adjusting"
        )
    return frame


def _validated_actions(actions: pl.DataFrame) -> pl.DataFrame:
    what = "corporate actions"
    columns = ("symbol", "ex_date", "action_type", "ratio", "amount")
    _require_columns(actions, columns, what)
    frame = _cast(actions, {name: CORPORATE_ACTIONS_SCHEMA[name] for name in columns}, what)
    for name in ("symbol", "ex_date", "action_type"):
        row = _first_bad_row(frame, pl.col(name).is_null())
        if row is not None:
            raise AdjustmentInputError(f"{what} row {row['_row']}: field {name!r} is null")
    row = _first_bad_row(frame, ~pl.col("action_type").is_in(list(ACTION_TYPES)))
    if row is not None:
        raise AdjustmentInputError(
            f"{what} row {row['_row']} (symbol {row['symbol']!r}, ex_date {row['ex_date']}): field "
            f"'action_type' is {row['action_type']!r}; expected one of {list(ACTION_TYPES)}"
        )
    is_split = pl.col("action_type") == "split"
    bad_ratio = is_split & ~(
        pl.col("ratio").is_not_null() & pl.col("ratio").is_finite() & (pl.col("ratio") > 0)
    )
    row = _first_bad_row(frame, bad_ratio)
    if row is not None:
        raise AdjustmentInputError(
            f"{what} row {row['_row']} (symbol {row['symbol']!r}, ex_date {row['ex_date']}): field "
            f"'ratio' of a split must be a positive finite number, got {row['ratio']!r}"
        )
    is_dividend = pl.col("action_type") == "dividend"
    bad_amount = is_dividend & ~(
        pl.col("amount").is_not_null() & pl.col("amount").is_finite() & (pl.col("amount") >= 0)
    )
    row = _first_bad_row(frame, bad_amount)
    if row is not None:
        raise AdjustmentInputError(
            f"{what} row {row['_row']} (symbol {row['symbol']!r}, ex_date {row['ex_date']}): field "
            f"'amount' of a dividend must be a non-negative finite number, got {row['amount']!r}"
        )
    return frame.with_row_index("_action_row")


def _factor_per_bar(keys: pl.DataFrame, per_action: pl.DataFrame, name: str) -> pl.DataFrame:
    """For each bar in ``keys``, the product of ``per_action.factor`` over ex_dates after the bar."""
    if per_action.height == 0:
        return keys.with_columns(pl.lit(1.0, dtype=pl.Float64).alias(name))
    suffix = (
        per_action.group_by("symbol", "ex_date")
        .agg(pl.col("factor").product())
        .sort("symbol", "ex_date")
        .with_columns(pl.col("factor").cum_prod(reverse=True).over("symbol").alias("_after"))
        .select("symbol", "ex_date", "_after")
        .sort("ex_date")
    )
    joined = keys.sort("session_date").join_asof(
        suffix,
        left_on="session_date",
        right_on="ex_date",
        by="symbol",
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    return joined.select(
        "_bar_row", "symbol", "session_date", pl.col("_after").fill_null(1.0).alias(name)
    ).sort("_bar_row")


def _factors(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    keys = bars.select("symbol", "session_date", "close").with_row_index("_bar_row")
    last = keys.group_by("symbol").agg(pl.col("session_date").max().alias("_last_bar"))
    previous = keys.select(
        "symbol", pl.col("session_date").alias("_prev_date"), pl.col("close").alias("_prev_close")
    ).sort("_prev_date")
    effective = (
        actions.join(last, on="symbol", how="inner")
        .filter(pl.col("ex_date") <= pl.col("_last_bar"))
        .sort("ex_date")
        .join_asof(
            previous,
            left_on="ex_date",
            right_on="_prev_date",
            by="symbol",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .filter(pl.col("_prev_date").is_not_null())
    )
    splits = effective.filter(pl.col("action_type") == "split").select(
        "symbol", "ex_date", (1.0 / pl.col("ratio")).alias("factor")
    )
    dividends = effective.filter(pl.col("action_type") == "dividend").with_columns(
        (1.0 - pl.col("amount") / pl.col("_prev_close")).alias("factor")
    )
    bad = dividends.filter(~(pl.col("factor") > 0))
    if bad.height:
        row = bad.sort("_action_row").row(0, named=True)
        raise AdjustmentInputError(
            f"corporate actions row {row['_action_row']} (symbol {row['symbol']!r}, ex_date "
            f"{row['ex_date']}): field 'amount' {row['amount']!r} is not smaller than the close "
            f"{row['_prev_close']!r} of the previous bar ({row['_prev_date']})"
        )
    split_part = _factor_per_bar(keys.drop("close"), splits, "split_factor")
    dividend_part = _factor_per_bar(
        keys.drop("close"), dividends.select("symbol", "ex_date", "factor"), "dividend_factor"
    )
    return split_part.with_columns(dividend_part["dividend_factor"]).with_columns(
        (pl.col("split_factor") * pl.col("dividend_factor")).alias("adj_factor")
    )


def adjustment_factors(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """Backward split/dividend factors per bar.

    ``bars`` needs ``symbol``, ``session_date``, ``close`` (unique per symbol and session);
    ``actions`` needs the CORPORATE_ACTIONS_SCHEMA columns. Returns one row per bar, in the order of
    ``bars``: ``symbol``, ``session_date``, ``split_factor``, ``dividend_factor``, ``adj_factor``.
    """
    frame = _validated_bars(bars, ("close",))
    return _factors(frame, _validated_actions(actions)).drop("_bar_row")


def apply_adjustments(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """``bars`` (BARS_SCHEMA columns at least) plus the factors and split/dividend-adjusted prices.

    Adds ``split_factor``, ``dividend_factor``, ``adj_factor``, ``adj_open``, ``adj_high``,
    ``adj_low``, ``adj_close`` and ``adj_volume`` (Float64); rows keep the order of ``bars``.
    """
    frame = _validated_bars(bars, ("open", "high", "low", "close", "volume"))
    factors = _factors(frame, _validated_actions(actions))
    adjusted = frame.drop([name for name in ADJUSTED_COLUMNS if name in frame.columns]).with_columns(
        factors["split_factor"], factors["dividend_factor"], factors["adj_factor"]
    )
    return adjusted.with_columns(
        *[
            (pl.col(name) * pl.col("adj_factor")).alias(f"adj_{name}")
            for name in ("open", "high", "low", "close")
        ],
        (pl.col("volume").cast(pl.Float64) / pl.col("split_factor")).alias("adj_volume"),
    )
