"""Is a large adjusted move a data error or the market? The judgement behind ``no_unexplained_jumps``.

A threshold on the adjusted return alone cries wolf on real data: AAPL really closed at 0.4813 of
the day before on 2000-09-29 (a profit warning), which is also roughly what an unreported 2:1 split
looks like. One number, two meanings. So every move beyond ``threshold`` (a *candidate*) is judged
on what tells the two apart, in this order:

1. **The market that day**: the session's median return over the other symbols with a bar on both
   days (at least ``MIN_MARKET_SYMBOLS`` of them) explains the move when the move relative to it,
   ``(1 + r) / (1 + m) - 1``, is within ``threshold`` (1987-10-19, 2008-10-13 and -15). Judged real.
2. **Reversal** (a bad tick): the next bar undoes most of the move (``|log(next / before)|`` at most
   ``REVERSAL_SHARE`` of ``|log(move)|``). A vendor's x100 or /100 for one day does exactly this; a
   real 40% crash rarely comes back the next day (at a low threshold real reversals do: UNH
   2008-09-29 -18.6%, +20.9% the day after). Flagged, as is the move back.
3. **Split-like**: the raw close ratio is within ``SPLIT_TOLERANCE`` of a split ratio
   (``SPLIT_RATIOS``: 2, 3, 3/2, 4, 5, 7, 10, ... and their inverses, 100 and 1/100 for unit errors)
   and the day's volume is what a split gives rather than news: an unreported split multiplies
   shares, so volume against the median of the symbol's previous ``VOLUME_SESSIONS`` bars is about
   the share multiplier ``k = 1 / ratio``; news trades far more (AAPL 2000-09-29: 18x the median for a
   2x price change). Volume above ``NEWS_VOLUME_MULTIPLE * max(k, 1)`` times the median: judged real.
   Split-like with split-like or unknown volume: flagged.
4. Anything else (a large move near no split ratio, with no reversal): judged real and listed.

Only moves inside the frame are judged (the first bar of a symbol has no previous one), and a move
on the frame's last session cannot be judged for reversal. Thresholds are module constants, tested on
real prices (``wealth_pipeline_tests/fixtures/real_prices``): hand-written rather than a library,
because no well-kept library judges corporate-action-like jumps (``pandas``/``scipy`` outlier
helpers only measure distance from a centre, which is exactly the rule that fails on real crashes).
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

REVERSAL_SHARE = 1 / 3
MIN_MARKET_SYMBOLS = 5
SPLIT_TOLERANCE = 0.12  # a split day's own move (AAPL 2000-06-21: +9.9%) comes on top of the ratio
VOLUME_SESSIONS = 20
MIN_VOLUME_SESSIONS = 3
NEWS_VOLUME_MULTIPLE = 3.0
_SPLITS = (2.0, 3.0, 1.5, 4.0, 4 / 3, 1.25, 2.5, 5.0, 6.0, 7.0, 8.0, 10.0, 15.0, 20.0, 25.0, 50.0, 100.0)
# Price ratios (close / previous close) an unreported split (or reverse split, or unit error) gives.
SPLIT_RATIOS: tuple[float, ...] = tuple(sorted({1 / s for s in _SPLITS} | set(_SPLITS)))

JUDGEMENT_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "session_date": pl.Date(),
    "adj_return": pl.Float64(),
    "flagged": pl.Boolean(),
    "reason": pl.Utf8(),
}


def _nearest_split(ratio: float) -> tuple[float, float]:
    """The split ratio nearest ``ratio`` in log distance, and that distance as a relative error."""
    best = min(SPLIT_RATIOS, key=lambda s: abs(math.log(ratio / s)))
    return best, math.exp(abs(math.log(ratio / best))) - 1


def _split_name(ratio: float) -> str:
    """``2:1`` for a price ratio of 0.5 (two new shares for one), ``5:4``, ``1:10`` for a reverse split."""
    k = 1 / ratio
    n, d = _fraction(k if k >= 1 else 1 / k)
    return f"{n}:{d}" if k >= 1 else f"{d}:{n}"


def _fraction(x: float) -> tuple[int, int]:
    """``x`` (>= 1, one of the split ratios) as n/d with d <= 4."""
    for d in (1, 2, 3, 4):
        if abs(x * d - round(x * d)) < 1e-9:
            return round(x * d), d
    raise ValueError(f"{x!r} is not one of SPLIT_RATIOS")  # pragma: no cover - only called with them


def judge_jumps(bars: pl.DataFrame, threshold: float = 0.4) -> pl.DataFrame:
    """One row per candidate move (``|adj_close / previous - 1| > threshold``): flagged or not, and why.

    ``bars`` needs ``symbol``, ``session_date``, ``close`` (raw), ``adj_close`` and ``volume`` (may be
    null). Returns ``JUDGEMENT_SCHEMA`` rows sorted by symbol and session.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    frame = bars.select("symbol", "session_date", "close", "adj_close", pl.col("volume").cast(pl.Float64))
    frame = frame.sort("symbol", "session_date")
    by_symbol = pl.col("symbol")
    prev_adj = pl.col("adj_close").shift(1).over(by_symbol)
    frame = frame.with_columns(
        (pl.col("adj_close") / prev_adj - 1).alias("_r"),
        (pl.col("close") / pl.col("close").shift(1).over(by_symbol)).alias("_raw_ratio"),
        (pl.col("adj_close").shift(-1).over(by_symbol) / prev_adj).alias("_next_vs_before"),
        (pl.col("adj_close") / pl.col("adj_close").shift(2).over(by_symbol)).alias("_vs_two_before"),
        pl.col("volume")
        .shift(1)
        .rolling_median(VOLUME_SESSIONS, min_samples=MIN_VOLUME_SESSIONS)
        .over(by_symbol)
        .alias("_volume_median"),
    )
    # The market: each session's median return over symbols with a bar on both days (the candidate's
    # own return is left out by taking the median over the others below).
    returns = frame.filter(pl.col("_r").is_not_null()).select("symbol", "session_date", "_r")
    candidates = frame.filter(pl.col("_r").abs() > threshold)
    if candidates.is_empty():
        return pl.DataFrame(schema=JUDGEMENT_SCHEMA)
    others = candidates.select("symbol", "session_date").join(
        returns.rename({"symbol": "_other", "_r": "_other_r"}), on="session_date"
    )
    market = (
        others.filter(pl.col("_other") != pl.col("symbol"))
        .group_by("symbol", "session_date")
        .agg(pl.col("_other_r").median().alias("_market"), pl.len().alias("_market_n"))
    )
    candidates = candidates.join(market, on=["symbol", "session_date"], how="left")
    rows = [_judge(row, threshold) for row in candidates.iter_rows(named=True)]
    return pl.DataFrame(rows, schema=JUDGEMENT_SCHEMA, orient="row").sort("symbol", "session_date")


def _judge(row: dict[str, Any], threshold: float) -> tuple[Any, ...]:
    r, ratio = row["_r"], row["_raw_ratio"]
    key = (row["symbol"], row["session_date"], r)
    move = math.log1p(r)
    market, count = row["_market"], row["_market_n"] or 0
    if market is not None and count >= MIN_MARKET_SYMBOLS:
        relative = (1 + r) / (1 + market) - 1
        if abs(relative) <= threshold:
            why = f"market: the median of {count} other symbols moved {market:+.1%} that day ({relative:+.1%} relative to it)"
            return (*key, False, why)
    after, back = row["_next_vs_before"], row["_vs_two_before"]
    if after is not None and after > 0 and abs(math.log(after)) <= REVERSAL_SHARE * abs(move):
        why = f"bad tick: reversed the next session (its close is {after - 1:+.1%} from the close before the move)"
        return (*key, True, why)
    if back is not None and back > 0 and abs(math.log(back)) <= REVERSAL_SHARE * abs(move):
        return (*key, True, "bad tick: the way back from the previous session's bad tick")
    if ratio is None or not ratio > 0:
        return (*key, False, "no raw close to compare")
    split, error = _nearest_split(ratio)
    if error > SPLIT_TOLERANCE:
        return (*key, False, f"price ratio {ratio:.4f} is near no split ratio (nearest {_split_name(split)})")
    volume, median = row["volume"], row["_volume_median"]
    k = 1 / ratio
    what = f"price ratio {ratio:.4f} near a {_split_name(split)} split"
    missing = "a split or dividend missing from corporate actions?"
    if volume is None or median is None or not median > 0:
        return (*key, True, f"split-like: {what}, volume unknown; {missing}")
    multiple = volume / median
    if multiple > NEWS_VOLUME_MULTIPLE * max(k, 1.0):
        return (
            *key,
            False,
            f"news: {what} but volume {multiple:.1f}x its median (a split gives about {k:.2g}x)",
        )
    return (
        *key,
        True,
        f"split-like: {what} with volume {multiple:.1f}x its median (a split gives about {k:.2g}x); {missing}",
    )


def _summary(judged: pl.DataFrame, threshold: float) -> tuple[bool, dict[str, Any]]:
    flagged, real = judged.filter(pl.col("flagged")), judged.filter(~pl.col("flagged"))

    def lines(part: pl.DataFrame) -> list[str]:
        return [f"{s} {d}: {r:+.1%}: {why}" for s, d, r, _, why in part.head(10).rows()]

    return flagged.is_empty(), {
        "threshold": threshold,
        "jumps": flagged.height,
        "judged_real": real.height,
        "examples": lines(flagged),
        "real_examples": lines(real),
    }


def no_unexplained_jumps(frame: pl.DataFrame, threshold: float = 0.4) -> tuple[bool, dict[str, Any]]:
    """The bars check: no adjusted move beyond ``threshold`` that looks like a bad tick or an unreported split.

    Metadata: the threshold, how many moves were flagged and judged real, and examples of each with
    the reason (``judge_jumps``). Only moves between bars of ``frame`` are judged; see
    ``no_unexplained_jumps_in_window`` for a window with the sessions before it as context.
    """
    judged = judge_jumps(frame, threshold) if frame.height else pl.DataFrame(schema=JUDGEMENT_SCHEMA)
    return _summary(judged, threshold)


def no_unexplained_jumps_in_window(
    window: pl.DataFrame, history: pl.DataFrame, threshold: float = 0.4
) -> tuple[bool, dict[str, Any]]:
    """``no_unexplained_jumps`` for the window's moves, with the bars before it as context.

    A daily run's window holds one session, so alone it has no move to judge; with ``history`` (the
    stored bars of the sessions before the window: the previous close, the volume median and the
    market of the first session) its first session is judged too. Only moves on the window's
    sessions are reported (a move on the last session cannot be judged for reversal until the next
    one exists). ``history`` may be empty or have no columns.
    """
    if window.is_empty():
        return no_unexplained_jumps(window, threshold)
    columns = ["symbol", "session_date", "close", "adj_close", "volume"]
    first = window["session_date"].min()
    parts = [window.select(columns)]
    if history.height:
        parts.insert(0, history.select(columns).filter(pl.col("session_date") < first))
    judged = judge_jumps(pl.concat(parts, how="vertical_relaxed"), threshold)
    return _summary(judged.filter(pl.col("session_date") >= first), threshold)
