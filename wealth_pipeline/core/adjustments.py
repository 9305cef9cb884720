"""Split and dividend adjustment of raw daily bars: pure, vectorized polars.

Two views of the same factors (ARCHITECTURE.md, "Adjustment model"):

* **Point-in-time** (what the processed tier and ``market.bars_daily`` store; ``action_factors``,
  ``cumulate``, ``point_in_time``): per symbol and ex-date one backward price factor
  ``f = (1 / split ratio) * (1 - sum of the day's dividend amounts / previous close)`` and a volume
  factor (the split ratio); ``cum_factor`` ``G(t)`` is the product of ``f`` over ex-dates ``<= t``,
  ``adj_factor = 1 / G(t)``, ``adj_open/high/low/close = raw * adj_factor`` and ``adj_volume =
  volume / split_factor`` with ``split_factor`` the product of split ratios through ``t``. Every
  value depends only on actions with ex_date ``<= t`` and bars before them, so a later action never
  changes an earlier row; ratios of ``adj_close`` are total returns. The series adjusted as of a
  later session ``T`` is ``raw(t) * G(T) / G(t)`` (= ``adj_*(t) * G(T)``), computed on read.
* **Backward as of the last bar** (``apply_adjustments``, below): the same factors, history scaled
  so that the latest bar is as traded; an oracle and a research helper.

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
* One chain per security (issue 21): when the bars and the actions (the factor table, for the
  point-in-time functions) both have a ``security_id`` column, every chain is keyed by it instead
  of the symbol, so a ticker change (FB -> META, one id) keeps one continuous series: META's
  first cumulative factor continues from FB's last, a split under META scales FB's earlier bars,
  and a dividend on META's first session is measured against FB's last close. A row whose
  ``security_id`` is null keeps a chain of its own symbol. Frames without the column (on either
  side) are keyed by symbol, as before.
* Bad input raises ``AdjustmentInputError`` naming the frame, row and field: missing columns,
  nulls, duplicate (symbol, session_date) bars, non-positive closes, unknown action types, a split
  ratio that is not a positive finite number, a negative dividend, or a dividend not smaller than
  the close it is measured against.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from wealth_pipeline.core.schemas import ADJUSTMENT_FACTORS_SCHEMA, CORPORATE_ACTIONS_SCHEMA

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


def _by_security(*frames: pl.DataFrame) -> bool:
    """Chains keyed by ``security_id``: every frame has the column."""
    return all("security_id" in frame.columns for frame in frames)


def _keyed(frame: pl.DataFrame, by_security: bool) -> pl.DataFrame:
    """``frame`` with ``_key``: the row's chain, its security_id (else ``symbol:<symbol>``) or its symbol."""
    if not by_security:
        return frame.with_columns(pl.col("symbol").alias("_key"))
    fallback = pl.lit("symbol:") + pl.col("symbol")
    return frame.with_columns(pl.coalesce(pl.col("security_id").cast(pl.Utf8), fallback).alias("_key"))


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
        per_action.group_by("_key", "ex_date")
        .agg(pl.col("factor").product())
        .sort("_key", "ex_date")
        .with_columns(pl.col("factor").cum_prod(reverse=True).over("_key").alias("_after"))
        .select("_key", "ex_date", "_after")
        .sort("ex_date")
    )
    joined = keys.sort("session_date").join_asof(
        suffix,
        left_on="session_date",
        right_on="ex_date",
        by="_key",
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    return joined.select(
        "_bar_row", "symbol", "session_date", pl.col("_after").fill_null(1.0).alias(name)
    ).sort("_bar_row")


def _with_previous_close(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """Actions of chains with bars, with the close and date of the chain's last bar before ex_date."""
    previous = bars.select(
        "_key", pl.col("session_date").alias("_prev_date"), pl.col("close").alias("_prev_close")
    ).sort("_prev_date")
    return (
        actions.join(bars.select("_key").unique(), on="_key", how="inner")
        .sort("ex_date")
        .join_asof(
            previous,
            left_on="ex_date",
            right_on="_prev_date",
            by="_key",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
    )


def _day_factors(effective: pl.DataFrame) -> pl.DataFrame:
    """One row per (symbol, ex_date): the day's combined price factor and volume factor.

    Several distributions on one ex-date add up (``1 - sum(amounts) / close``, what the holder
    receives); several splits multiply. A day whose dividends reach the close is refused.
    """
    is_split = pl.col("action_type") == "split"
    is_dividend = pl.col("action_type") == "dividend"
    ids = [pl.col("security_id").first()] if "security_id" in effective.columns else []
    days = effective.group_by("_key", "symbol", "ex_date").agg(
        *ids,
        pl.col("ratio").filter(is_split).product().alias("volume_factor"),
        pl.col("amount").filter(is_dividend).sum().alias("_dividends"),
        pl.col("_prev_close").first(),
        pl.col("_prev_date").first(),
        pl.col("_action_row").filter(is_dividend).min().alias("_first_dividend_row"),
    )
    days = days.with_columns((1.0 - pl.col("_dividends") / pl.col("_prev_close")).alias("_dividend_part"))
    bad = days.filter(~(pl.col("_dividend_part") > 0))
    if bad.height:
        row = bad.sort("_first_dividend_row").row(0, named=True)
        raise AdjustmentInputError(
            f"corporate actions row {row['_first_dividend_row']} (symbol {row['symbol']!r}, ex_date "
            f"{row['ex_date']}): field 'amount' {row['_dividends']!r} (the day's dividends in total) is not "
            f"smaller than the close {row['_prev_close']!r} of the previous bar ({row['_prev_date']})"
        )
    return days.select(
        "_key",
        "symbol",
        "ex_date",
        (pl.col("_dividend_part") / pl.col("volume_factor")).alias("factor"),
        pl.col("volume_factor"),
        pl.col("_dividend_part"),
        *(["security_id"] if ids else []),
    ).sort("symbol", "ex_date")


def _factors(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    by_security = _by_security(bars, actions)
    bars, actions = _keyed(bars, by_security), _keyed(actions, by_security)
    keys = bars.select("symbol", "session_date", "close", "_key").with_row_index("_bar_row")
    last = keys.group_by("_key").agg(pl.col("session_date").max().alias("_last_bar"))
    effective = _with_previous_close(
        keys, actions.join(last, on="_key", how="inner").filter(pl.col("ex_date") <= pl.col("_last_bar"))
    ).filter(pl.col("_prev_date").is_not_null())
    days = _day_factors(effective)
    splits = days.select("_key", "ex_date", (1.0 / pl.col("volume_factor")).alias("factor"))
    dividends = days.select("_key", "ex_date", pl.col("_dividend_part").alias("factor"))
    split_part = _factor_per_bar(keys.drop("close"), splits, "split_factor")
    dividend_part = _factor_per_bar(keys.drop("close"), dividends, "dividend_factor")
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


# ---- point-in-time -------------------------------------------------------------------------------

FACTOR_TABLE_COLUMNS: tuple[str, ...] = tuple(ADJUSTMENT_FACTORS_SCHEMA)
POINT_IN_TIME_COLUMNS: tuple[str, ...] = (*ADJUSTED_COLUMNS, "cum_factor")


def action_factors(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """Per (symbol, ex_date) of ``actions``: the day's backward price ``factor`` and ``volume_factor``.

    ``bars`` (``symbol``, ``session_date``, ``close``) supplies the close of the last bar before each
    ex-date; an action without such a bar (it predates the bars given) is left out, as is an action
    of a symbol without bars. Returns ADJUSTMENT_FACTORS_SCHEMA's first four columns, sorted, and
    ``security_id`` when both frames have it (the previous close is then the security's, under any
    of its tickers: a dividend on a new ticker's first session is measured against the former's).
    """
    frame = _validated_bars(bars, ("close",))
    valid = _validated_actions(actions)
    by_security = _by_security(frame, valid)
    effective = _with_previous_close(_keyed(frame, by_security), _keyed(valid, by_security)).filter(
        pl.col("_prev_date").is_not_null()
    )
    return _day_factors(effective).drop("_dividend_part", "_key")


def cumulate(factors: pl.DataFrame, carried: pl.DataFrame | None = None) -> pl.DataFrame:
    """``factors`` (one row per symbol and ex-date) with ``cum_factor`` and ``cum_volume_factor``.

    ``carried``: per chain the cumulative factors before the first of ``factors``' ex-dates (the
    last row of the factor table before a window, ``last_before``); chains not in it start at 1.
    A chain is a symbol, or, when ``factors`` has ``security_id`` (``carried`` must have it too), a
    security: a new ticker's first row continues from the former ticker's cumulative factors.
    Returns ADJUSTMENT_FACTORS_SCHEMA (plus ``security_id`` when given), sorted by symbol and ex-date.
    """
    by_security = _by_security(factors)
    if by_security and carried is not None:
        _require_columns(
            carried, ("security_id",), "carried cumulative factors (the factors have security_id)"
        )
    columns = {**ADJUSTMENT_FACTORS_SCHEMA, **({"security_id": pl.Utf8()} if by_security else {})}
    start = (
        _keyed(carried, by_security).select(
            "_key", pl.col("cum_factor").alias("_g0"), pl.col("cum_volume_factor").alias("_v0")
        )
        if carried is not None and carried.height
        else pl.DataFrame(schema={"_key": pl.Utf8(), "_g0": pl.Float64(), "_v0": pl.Float64()})
    )
    return (
        _keyed(factors, by_security)
        .sort("_key", "ex_date", "symbol")
        .join(start, on="_key", how="left")
        .with_columns(
            (pl.col("_g0").fill_null(1.0) * pl.col("factor").cum_prod().over("_key")).alias("cum_factor"),
            (pl.col("_v0").fill_null(1.0) * pl.col("volume_factor").cum_prod().over("_key")).alias(
                "cum_volume_factor"
            ),
        )
        .select([pl.col(c).cast(t) for c, t in columns.items()])
        .sort("symbol", "ex_date")
    )


def last_before(table: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Per chain (symbol, or security when ``table`` has ``security_id``), the factor-table row of
    its last ex-date before ``day`` (what a window carries)."""
    return (
        _keyed(table.filter(pl.col("ex_date") < day), _by_security(table))
        .sort("_key", "ex_date", "symbol")
        .group_by("_key", maintain_order=True)
        .last()
        .drop("_key")
        .sort("symbol", "ex_date")
    )


def point_in_time(bars: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """``bars`` plus the point-in-time factors and adjusted prices from the factor ``table``.

    ``table``: ADJUSTMENT_FACTORS_SCHEMA rows covering every ex-date up to the bars' last session
    (from ``cumulate``). Each bar takes the cumulative factors of its symbol's last ex-date on or
    before its session (1 before the first; its security's, under any ticker, when ``bars`` and
    ``table`` both have ``security_id``). Adds ``split_factor`` (product of split ratios),
    ``dividend_factor``, ``adj_factor = 1 / cum_factor = split_factor * dividend_factor``,
    ``adj_open/high/low/close = raw * adj_factor``, ``adj_volume = volume / split_factor`` and
    ``cum_factor``; rows keep the order of ``bars``.
    """
    frame = _validated_bars(bars, ("open", "high", "low", "close", "volume"))
    by_security = _by_security(frame, table)
    keys = _keyed(frame, by_security).select("_key", "session_date").with_row_index("_bar_row")
    cums = (
        _keyed(table, by_security)
        .select("_key", "ex_date", "cum_factor", "cum_volume_factor")
        .sort("ex_date")
    )
    joined = (
        keys.sort("session_date")
        .join_asof(
            cums,
            left_on="session_date",
            right_on="ex_date",
            by="_key",
            strategy="backward",
            allow_exact_matches=True,
            check_sortedness=False,
        )
        .sort("_bar_row")
    )
    cum = joined["cum_factor"].fill_null(1.0)
    split = joined["cum_volume_factor"].fill_null(1.0)
    adjusted = frame.drop([c for c in POINT_IN_TIME_COLUMNS if c in frame.columns]).with_columns(
        split.alias("split_factor"),
        (1.0 / (cum * split)).alias("dividend_factor"),
        (1.0 / cum).alias("adj_factor"),
        cum.alias("cum_factor"),
    )
    return adjusted.with_columns(
        *[
            (pl.col(name) * pl.col("adj_factor")).alias(f"adj_{name}")
            for name in ("open", "high", "low", "close")
        ],
        (pl.col("volume").cast(pl.Float64) / pl.col("split_factor")).alias("adj_volume"),
    )


def adjusted_as_of(bars: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """Point-in-time ``bars`` re-expressed "as of" the last ex-date in ``table`` (the on-read view).

    ``adj_*`` become ``raw * G(latest) / G(t)`` and ``adj_volume`` ``volume * V(latest) / V(t)``,
    per chain, with ``G(latest)``/``V(latest)`` the cumulative factors of the chain's last row in
    ``table`` (the same arithmetic as the warehouse view ``market.bars_adjusted``); a chain is the
    symbol, or the security when ``bars`` and ``table`` both have ``security_id``.
    """
    by_security = _by_security(bars, table)
    latest = (
        _keyed(table, by_security)
        .sort("_key", "ex_date", "symbol")
        .group_by("_key", maintain_order=True)
        .last()
        .select("_key", pl.col("cum_factor").alias("_g"), pl.col("cum_volume_factor").alias("_v"))
    )
    joined = (
        _keyed(bars, by_security)
        .join(latest, on="_key", how="left", maintain_order="left")
        .with_columns(pl.col("_g").fill_null(1.0), pl.col("_v").fill_null(1.0))
    )
    return joined.with_columns(
        *[
            (pl.col(f"adj_{name}") * pl.col("_g")).alias(f"adj_{name}")
            for name in ("open", "high", "low", "close")
        ],
        (pl.col("adj_volume") * pl.col("_v")).alias("adj_volume"),
    ).drop("_g", "_v", "_key")
