"""Processed daily bars from raw deliveries: validation, spike removal, point-in-time adjustment, completeness.

Pure compute on polars frames; the ``bars`` asset (``defs/processed/bars.py``) reads the raw tier,
calls these and hands the result to the publish step.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl

from wealth_pipeline.core import adjustments, calendars, outliers, validation
from wealth_pipeline.core import universe as listing
from wealth_pipeline.core.schemas import ADJUSTMENT_FACTORS_SCHEMA, PROCESSED_BARS_SCHEMA

# Calendar days of raw history read before the window: the close before a dividend's ex-date and
# the neighbours a spike is judged against (a suspension longer than this is documented as a gap).
LOOKBACK_DAYS = 14
# Calendar days of raw history read after the window (when delivered): the next session that judges
# whether the window's last bar is a spike.
LOOKAHEAD_DAYS = 7
SPIKE_RATIO = 20.0
JUMP_THRESHOLD = 0.4
# Columns of a raw row that identify it in a quarantine report, when the dataset has them.
TRACE_COLUMNS = ("source_file", "source_row", "symbol", "session_date", "ex_date", "base_currency")


def expected_bars(universe: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """(symbol, session_date) pairs the universe should trade: each listing on its exchange's sessions."""
    rows = []
    for exchange, symbols in universe.group_by("exchange"):
        days = calendars.sessions(str(exchange[0]), start, end)
        rows.append(
            pl.DataFrame({"symbol": symbols["symbol"]}).join(
                pl.DataFrame({"session_date": days}, schema={"session_date": pl.Date()}), how="cross"
            )
        )
    if not rows:
        return pl.DataFrame(schema={"symbol": pl.Utf8(), "session_date": pl.Date()})
    return listing.within_listing(pl.concat(rows), universe)  # only the sessions each symbol was listed (#21)


def trace_rejects(rejects: pl.DataFrame, numbered: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Rejects with the raw file and row they came from and the row's key: what quarantine keeps."""
    context = [c for c in TRACE_COLUMNS if c in numbered.columns]
    traced = rejects.join(numbered.select("row_number", *context), on="row_number", how="left")
    return traced.with_columns(pl.lit(dataset).alias("dataset"))


def name_vendor_lines(rejects: pl.DataFrame, raw_bars: pl.DataFrame, delivered: pl.DataFrame) -> pl.DataFrame:
    """``rejects`` whose raw row came from a landing-zone file, naming that file and line instead of the raw tier.

    ``rejects``: ``trace_rejects`` output (``source_file``/``source_row``: the raw-tier version and row).
    ``raw_bars``: the raw rows they were traced to (``source_file``, ``source_row`` and the bar's values).
    ``delivered``: the landing zone's current rows (the bar's values plus ``file``, the file's URI, and
    ``line``, the row's line there). A reject is renamed only when the file's row for its (symbol,
    session_date) holds the same values as the raw row (not a later correction); others are unchanged.
    A spike or a listing reject is found after the file was parsed, yet names the file and line a
    vendor can look at, as the parser's own rejects do.
    """
    if rejects.is_empty() or delivered.is_empty() or "source_file" not in rejects.columns:
        return rejects
    values = [c for c in ("open", "high", "low", "close", "volume", "currency") if c in raw_bars.columns]
    raw_rows = raw_bars.select("source_file", "source_row", "symbol", "session_date", *values)
    files = delivered.select(
        "symbol", "session_date", *[pl.col(c).alias(f"_vendor_{c}") for c in values], "file", "line"
    ).unique(subset=["symbol", "session_date"], keep="last")
    matched = (
        raw_rows.join(files, on=["symbol", "session_date"], how="inner")
        .filter(pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"_vendor_{c}")) for c in values]))
        .filter(pl.col("line").is_not_null())
        .select("source_file", "source_row", pl.col("file").alias("_file"), pl.col("line").alias("_line"))
    )
    located = rejects.join(matched, on=["source_file", "source_row"], how="left")
    return located.with_columns(
        pl.coalesce("_file", "source_file").alias("source_file"),
        pl.coalesce(pl.col("_line").cast(pl.Int64), pl.col("source_row")).alias("source_row"),
    ).drop("_file", "_line")


def build_bars(
    raw_bars: pl.DataFrame,
    actions: pl.DataFrame,
    universe: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    source: str | None = None,
    factors: pl.DataFrame | None = None,
) -> BuiltBars:
    """Validated, deduplicated, point-in-time adjusted bars of the window, its factor rows and rejects.

    ``raw_bars``: the raw rows of ``[start - LOOKBACK_DAYS, end + LOOKAHEAD_DAYS]`` (those that
    exist), with ``source_file``/``source_row`` when read with ``lakehouse.raw.read_current``, so
    rejects name the raw file and row. The rows around the window give each bar both neighbours a
    spike is judged against and the close before a dividend. ``actions``: the corporate actions
    with ex_date in the window. ``factors``: the stored factor table (ADJUSTMENT_FACTORS_SCHEMA);
    its rows before ``start`` carry the cumulative factors into the window. Each bar's ``source``
    is its raw row's (the provider that delivered it, issue 22); ``source`` is for raw rows without
    that column (a ``ValueError`` when neither says it).
    """
    if "source" not in raw_bars.columns:
        if source is None:
            raise ValueError("build_bars: raw_bars has no source column and no source was given")
        raw_bars = raw_bars.with_columns(pl.lit(source, dtype=pl.Utf8).alias("source"))
    listings = dict(universe.select("symbol", "exchange").iter_rows())
    numbered = raw_bars.with_row_index("row_number", offset=1).with_columns(
        pl.col("row_number").cast(pl.Int64)
    )
    result = validation.validate_bars(numbered, known_symbols=listings, is_session=calendars.is_session)
    good, rejects = result.good, result.rejects
    unlisted = listing.listing_reason(
        good, universe
    )  # after a delisting, before an IPO, a former ticker (#21)
    if unlisted.is_not_null().any():
        outside = good.with_columns(unlisted.alias("reason")).filter(pl.col("reason").is_not_null())
        located = outside.join(
            numbered.select("row_number", "symbol", "session_date"), on=["symbol", "session_date"], how="left"
        )
        rejects = pl.concat(
            [
                rejects,
                located.select(
                    "row_number",
                    pl.lit("session_date").alias("field"),
                    pl.col("session_date").cast(pl.Utf8).alias("value"),
                    "reason",
                ).cast(validation.REJECT_SCHEMA),
            ],
            how="vertical_relaxed",
        )
        good = good.filter(unlisted.is_null())
    good_numbered = good.join(
        numbered.select("row_number", "symbol", "session_date"), on=["symbol", "session_date"], how="left"
    )
    spikes = outliers.flag_spikes(good, SPIKE_RATIO)
    spiked = good_numbered.filter(spikes).select("row_number", "symbol", "session_date", "close")
    if spiked.height:
        spike_rejects = spiked.select(
            pl.col("row_number"),
            pl.lit("close").alias("field"),
            pl.col("close").cast(pl.Utf8).alias("value"),
            pl.lit(
                f"close is at least {SPIKE_RATIO:.0f}x away from both neighbouring closes and no corporate action explains it"
            ).alias("reason"),
        )
        rejects = pl.concat([rejects, spike_rejects.cast(validation.REJECT_SCHEMA)], how="vertical_relaxed")
        good = good.filter(~spikes)
    window_actions = actions.filter(pl.col("ex_date").is_between(start, end)) if actions.height else actions
    stored = (
        factors if factors is not None and factors.height else pl.DataFrame(schema=ADJUSTMENT_FACTORS_SCHEMA)
    )
    # One factor chain per security (issue 21): bars, actions and stored factor rows carry the id the
    # symbol master gives their symbol, so a ticker change continues its former ticker's chain.
    seen = listing.with_security_ids(good.filter(pl.col("session_date") <= end), universe)
    stored = _with_master_ids(stored, universe)
    table = adjustments.cumulate(
        adjustments.action_factors(seen, listing.with_security_ids(window_actions, universe)),
        adjustments.last_before(stored, start),
    )
    window = adjustments.point_in_time(
        seen.filter(pl.col("session_date").is_between(start, end)),
        pl.concat([stored.filter(pl.col("ex_date") < start), table.select(stored.columns)]),
    ).drop("security_id")
    table = table.select(list(ADJUSTMENT_FACTORS_SCHEMA))
    window = window.join(
        listing.listing_columns(universe).select("symbol", "exchange", "security_id"), on="symbol", how="left"
    ).join(_row_sources(numbered), on=["symbol", "session_date"], how="left")
    traced = trace_rejects(rejects, numbered, "bars")
    in_window = traced.filter(
        pl.col("session_date").is_null() | pl.col("session_date").is_between(start, end)
    )
    frame = window.select([pl.col(c).cast(t) for c, t in PROCESSED_BARS_SCHEMA.items()]).sort(
        ["symbol", "session_date"]
    )
    return BuiltBars(
        frame,
        in_window,
        table,
        spiked.filter(pl.col("session_date") < start).select("symbol", "session_date"),
    )


def _with_master_ids(factors: pl.DataFrame, universe: pl.DataFrame) -> pl.DataFrame:
    """Factor rows (ADJUSTMENT_FACTORS_SCHEMA) with ``security_id``: the stored one, else the master's for the symbol."""
    stored_ids = factors["security_id"] if "security_id" in factors.columns else None
    frame = listing.with_security_ids(factors.select(list(ADJUSTMENT_FACTORS_SCHEMA)), universe)
    if stored_ids is not None:
        frame = frame.with_columns(
            pl.coalesce(stored_ids.cast(pl.Utf8), pl.col("security_id")).alias("security_id")
        )
    return frame


def _row_sources(numbered: pl.DataFrame) -> pl.DataFrame:
    """(symbol, session_date) -> the source of its raw row; ``unknown`` if two raw rows of a key disagree."""
    return numbered.group_by("symbol", "session_date").agg(
        pl.when(pl.col("source").n_unique() == 1).then(pl.col("source").first()).otherwise(pl.lit("unknown")).alias("source")
    )


@dataclass(frozen=True)
class BuiltBars:
    """What ``build_bars`` returns: the window's bars, its rejects, its factor rows (ex_date in the
    window) and the bars before the window that are spikes now that their next session is known."""

    frame: pl.DataFrame
    rejects: pl.DataFrame
    factors: pl.DataFrame
    spikes_before: pl.DataFrame


def restatement_start(
    built: BuiltBars,
    stored_window: pl.DataFrame,
    stored_factors: pl.DataFrame,
    stored_before: pl.DataFrame,
    start: dt.date,
    end: dt.date,
) -> tuple[dt.date | None, list[str]]:
    """The first session whose stored derived values this window's result makes stale, and why.

    * a bar before the window that is a spike now that its next session is known, and is stored
      (``stored_before``: processed bars of the lookback): from that session;
    * the window's factor rows differ from the stored ones (a late or corrected action), or its
      bars differ from the stored ones (a corrected vendor file): later sessions carry the old
      cumulative factors, warm-up history and dividend closes, so from the day after ``end``.
    ``None`` when nothing later is stale.
    """
    reasons: list[str] = []
    first: dt.date | None = None
    if built.spikes_before.height and stored_before.height:
        hit = built.spikes_before.join(
            stored_before.select("symbol", "session_date"), on=["symbol", "session_date"]
        )
        if hit.height:
            first = hit["session_date"].min()
            reasons += [f"{s} {d}: a spike now that its next session is known" for s, d in hit.head(5).rows()]
    old = (
        stored_factors.filter(pl.col("ex_date").is_between(start, end))
        if stored_factors.height
        else stored_factors
    )
    if not _same(built.factors, old, ["symbol", "ex_date"]):
        reasons.append(f"adjustment factors with ex_date in {start}..{end} changed")
    compare = [c for c in ("symbol", "session_date", "open", "high", "low", "close", "volume", "cum_factor")]
    if not _same(
        built.frame.select(compare),
        stored_window.select(compare) if stored_window.height else stored_window,
        ["symbol", "session_date"],
    ):
        reasons.append(f"bars of {start}..{end} changed")
    if len(reasons) and first is None:
        first = end + dt.timedelta(days=1)
    return first, reasons


def _same(new: pl.DataFrame, old: pl.DataFrame, keys: list[str]) -> bool:
    if new.height != old.height:
        return False
    if new.height == 0:
        return True
    return new.sort(keys).equals(old.select(new.columns).cast(dict(new.schema)).sort(keys))


def completeness(frame: pl.DataFrame, expected: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Every expected (symbol, session_date) has a bar; the missing ones are counted and named."""
    missing = expected.join(frame.select("symbol", "session_date"), on=["symbol", "session_date"], how="anti")
    return missing.is_empty(), {
        "expected_bars": expected.height,
        "present_bars": frame.height,
        "missing_bars": missing.height,
        "examples": [f"{s} {d}" for s, d in missing.head(10).rows()],
    }


def no_unexplained_jumps(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """No adjusted move above ``JUMP_THRESHOLD`` that no split or dividend explains."""
    jumps = outliers.unexplained_jumps(frame, JUMP_THRESHOLD)
    return jumps.is_empty(), {
        "threshold": JUMP_THRESHOLD,
        "jumps": jumps.height,
        "examples": [f"{r[0]} {r[1]}: {r[4]:+.1%}" for r in jumps.head(10).rows()],
    }
