"""Point-in-time universes: listing intervals, ticker history and index membership (issue 21).

The symbol master (``SYMBOL_MASTER_SCHEMA``) has one row per symbol a security has used, each valid
over ``[valid_from, valid_to)`` (null bounds: open). From it:

* ``securities_history``: the dated records per ``security_id`` (what ``ref.securities_history``
  holds): the first interval opened by the listing, later ones by a ticker change; the last one's
  ``valid_to`` is the delisting, if any.
* ``listed``: whether a (symbol, date) row falls inside its symbol's interval: bars after a
  delisting, before an IPO, or under a former ticker after the change are rejected with it.
* ``universe_as_of(history, as_of, membership, index)``: the securities listed on a date, with
  the symbol they had then, optionally only an index's members that day (``ref.universe_as_of``
  in SQL computes the same).
* ``index_members``: which (security, date) rows of a frame were in an index on their date, what
  a backtest or a training set filters with so that 2019 uses 2019's members.

Pure polars; no Dagster.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from wealth_pipeline.core import identifiers
from wealth_pipeline.core.schemas import SYMBOL_MASTER_SCHEMA, conform

SECURITIES_HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "security_id": pl.Utf8(),
    "valid_from": pl.Date(),
    "valid_to": pl.Date(),
    "symbol": pl.Utf8(),
    "name": pl.Utf8(),
    "exchange": pl.Utf8(),
    "mic": pl.Utf8(),
    "isin": pl.Utf8(),
    "change": pl.Utf8(),
}
INDEX_MEMBERSHIP_SCHEMA: dict[str, pl.DataType] = {
    "index_name": pl.Utf8(),
    "security_id": pl.Utf8(),
    "valid_from": pl.Date(),
    "valid_to": pl.Date(),
}
# A null valid_from means "listed before the data starts"; comparisons use this instead.
_BEFORE_ALL = dt.date(1, 1, 1)
_AFTER_ALL = dt.date(9999, 12, 31)
LISTING_COLUMNS = ("symbol", "exchange", "security_id", "valid_from", "valid_to")


def listing_columns(universe: pl.DataFrame) -> pl.DataFrame:
    """symbol, exchange, security_id, valid_from, valid_to of a symbol master (null when a column is absent)."""
    types = {"security_id": pl.Utf8(), "valid_from": pl.Date(), "valid_to": pl.Date()}
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in types.items() if c not in universe.columns]
    return universe.with_columns(missing).select(LISTING_COLUMNS)


def _in_interval(date: pl.Expr, start: pl.Expr, end: pl.Expr) -> pl.Expr:
    return (date >= start.fill_null(_BEFORE_ALL)) & (date < end.fill_null(_AFTER_ALL))


def listed(frame: pl.DataFrame, universe: pl.DataFrame, date_column: str = "session_date") -> pl.Series:
    """Per row of ``frame``: is its symbol listed (valid) on its date? False for unknown symbols."""
    intervals = listing_columns(universe).select(
        "symbol", "valid_from", "valid_to", pl.lit(True).alias("_known")
    )
    joined = (
        frame.select("symbol", date_column).with_row_index("_row").join(intervals, on="symbol", how="left")
    )
    flags = joined.select(
        "_row",
        (
            pl.col("_known").fill_null(False)
            & _in_interval(pl.col(date_column), pl.col("valid_from"), pl.col("valid_to"))
        )
        .fill_null(False)
        .alias("ok"),
    ).sort("_row")
    return flags["ok"].alias("listed")


def listing_reason(
    frame: pl.DataFrame, universe: pl.DataFrame, date_column: str = "session_date"
) -> pl.Series:
    """Why each row is outside its symbol's listing interval (null when inside or the symbol is unknown)."""
    intervals = listing_columns(universe).select("symbol", "valid_from", "valid_to")
    joined = (
        frame.select("symbol", date_column).with_row_index("_row").join(intervals, on="symbol", how="left")
    )
    bounds = pl.format(
        "[{}, {})",
        pl.col("valid_from").cast(pl.Utf8).fill_null("start"),
        pl.col("valid_to").cast(pl.Utf8).fill_null("open"),
    )
    inside = _in_interval(pl.col(date_column), pl.col("valid_from"), pl.col("valid_to"))
    reason = (
        pl.when(pl.col("valid_from").is_null() & pl.col("valid_to").is_null())
        .then(None)
        .when(inside)
        .then(None)
        .otherwise(
            pl.format(
                "{} is not listed on {}: the symbol master lists it over {} (valid_to exclusive: the "
                "delisting or ticker change)",
                pl.col("symbol"),
                pl.col(date_column).cast(pl.Utf8),
                bounds,
            )
        )
    )
    return joined.select("_row", reason.alias("reason")).sort("_row")["reason"]


def within_listing(
    pairs: pl.DataFrame, universe: pl.DataFrame, date_column: str = "session_date"
) -> pl.DataFrame:
    """The (symbol, date) rows of ``pairs`` inside their symbol's listing interval (expected bars)."""
    if pairs.is_empty():
        return pairs
    return pairs.filter(listed(pairs, universe, date_column))


def securities_history(master: pl.DataFrame) -> pl.DataFrame:
    """Dated records per security from a symbol master: one per symbol interval, in time order.

    ``change`` is ``listing`` for a security's first interval and ``ticker_change`` for each later
    one. Two intervals of one security that overlap are an error (a security has one symbol at a time).
    """
    listings = master.with_columns(
        [
            pl.lit(None, dtype=t).alias(c)
            for c, t in {"mic": pl.Utf8(), "isin": pl.Utf8()}.items()
            if c not in master.columns
        ]
    )
    frame = (
        listing_columns(listings)
        .join(listings.select("symbol", "name", "mic", "isin"), on="symbol")
        .filter(pl.col("security_id").is_not_null())
        .sort("security_id", pl.col("valid_from").fill_null(_BEFORE_ALL))
    )
    ordered = frame.with_columns(
        pl.col("valid_to").shift(1).over("security_id").alias("_prev_to"),
        pl.col("symbol").shift(1).over("security_id").alias("_prev_symbol"),
        pl.int_range(pl.len()).over("security_id").alias("_seq"),
    )
    overlap = ordered.filter(
        (pl.col("_seq") > 0)
        & (pl.col("_prev_to").is_null() | (pl.col("valid_from").fill_null(_BEFORE_ALL) < pl.col("_prev_to")))
    )
    if overlap.height:
        first = overlap.row(0, named=True)
        raise ValueError(
            f"symbol master: security {first['security_id']} has overlapping symbols {first['_prev_symbol']} and "
            f"{first['symbol']} (from {first['valid_from']}); each symbol interval must end (valid_to) on or before "
            "the next one starts (valid_from)"
        )
    history = ordered.with_columns(
        pl.col("valid_from").fill_null(_BEFORE_ALL),
        pl.when(pl.col("_seq") == 0)
        .then(pl.lit("listing"))
        .otherwise(pl.lit("ticker_change"))
        .alias("change"),
    )
    return history.select([pl.col(c).cast(t) for c, t in SECURITIES_HISTORY_SCHEMA.items()])


def universe_as_of(
    history: pl.DataFrame,
    as_of: dt.date,
    membership: pl.DataFrame | None = None,
    index: str | None = None,
) -> pl.DataFrame:
    """Securities listed on ``as_of`` (symbol and name as of then), only ``index``'s members that day if given."""
    listed_then = history.filter(_in_interval(pl.lit(as_of), pl.col("valid_from"), pl.col("valid_to")))
    if index is not None:
        if membership is None:
            raise ValueError(f"universe_as_of({as_of}, {index!r}) needs the index membership table")
        members = (
            membership.filter(
                (pl.col("index_name") == index)
                & _in_interval(pl.lit(as_of), pl.col("valid_from"), pl.col("valid_to"))
            )
            .select("security_id")
            .unique()
        )
        listed_then = listed_then.join(members, on="security_id", how="semi")
    return listed_then.select("security_id", "symbol", "name", "exchange", "mic", "isin").sort("symbol")


def index_members(
    frame: pl.DataFrame,
    membership: pl.DataFrame,
    index: str,
    date_column: str = "session_date",
    id_column: str = "security_id",
) -> pl.Series:
    """Per row of ``frame``: was its security a member of ``index`` on the row's date?"""
    intervals = membership.filter(pl.col("index_name") == index).select(
        pl.col("security_id").alias(id_column), "valid_from", "valid_to"
    )
    rows = frame.select(id_column, date_column).with_row_index("_row")
    hits = (
        rows.join(intervals, on=id_column, how="inner")
        .filter(_in_interval(pl.col(date_column), pl.col("valid_from"), pl.col("valid_to")))
        .select("_row")
        .unique()
    )
    return rows.select(pl.col("_row").is_in(hits["_row"].implode()).alias("member"))["member"]


def symbol_security_ids(universe: pl.DataFrame) -> pl.DataFrame:
    """symbol -> security_id of a symbol master (for joining facts keyed by symbol)."""
    return listing_columns(universe).select("symbol", "security_id")


def with_security_ids(frame: pl.DataFrame, master: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (with ``symbol``) with the ``security_id`` the symbol master gives each row's symbol.

    The master has one row per symbol (a former ticker keeps its own row with the security's one
    id), so the lookup is by symbol; a symbol it does not know gets null. An existing
    ``security_id`` column is replaced, and the row order kept.
    """
    ids = symbol_security_ids(master).unique("symbol", keep="first")
    return frame.drop("security_id", strict=False).join(ids, on="symbol", how="left", maintain_order="left")


def point_in_time(
    frame: pl.DataFrame,
    master: pl.DataFrame,
    membership: pl.DataFrame | None = None,
    index: str | None = None,
    date_column: str = "session_date",
) -> pl.DataFrame:
    """The rows of a (symbol, date) frame whose security was in the universe on that date.

    In the universe means listed then (its symbol's interval), and, when ``index`` is given, a
    member of it that day: a security that joins later never appears in earlier rows, one that
    left or was delisted not after. This is what the model's training set is filtered with, so a
    backtest on 2019 uses 2019's members (not today's constituents: no survivorship bias).
    """
    if frame.is_empty():
        return frame
    kept = frame.filter(listed(frame, master, date_column))
    if index is None:
        return kept
    if membership is None or membership.filter(pl.col("index_name") == index).is_empty():
        raise ValueError(
            f"point-in-time universe of index {index!r}: no membership rows for it (ref.index_membership)"
        )
    with_ids = kept.join(symbol_security_ids(master), on="symbol", how="left")
    members = index_members(with_ids, membership, index, date_column)
    return kept.filter(members)


MICS = {"NYSE": "XNYS", "NASDAQ": "XNAS", "TSX": "XTSE"}  # ISO 10383 codes of the exchanges with calendars
IDENTITY_COLUMNS = (
    "security_id",
    "isin",
    "cusip",
    "figi",
    "mic",
    "country",
    "security_type",
    "industry",
    "dividend_currency",
    "valid_from",
    "valid_to",
)


def complete_master(frame: pl.DataFrame) -> pl.DataFrame:
    """A symbol master with the identity columns it lacks (a provider that has none, e.g. a master
    built before issue 21): mic from the exchange and, where null, ``security_id`` derived like a new
    security's (``core.identifiers``: the ISIN, else ``MIC:symbol``); the others null. Every other
    ``SYMBOL_MASTER_SCHEMA`` column must be there."""
    missing = [
        pl.lit(None, dtype=SYMBOL_MASTER_SCHEMA[c]).alias(c)
        for c in IDENTITY_COLUMNS
        if c not in frame.columns
    ]
    full = frame.with_columns(missing)
    full = full.with_columns(
        pl.coalesce("mic", pl.col("exchange").replace_strict(MICS, default=None, return_dtype=pl.Utf8)).alias(
            "mic"
        )
    )
    derived = pl.struct("isin", "mic", "symbol").map_elements(
        lambda r: identifiers.security_id(identifiers.origin_key(r["isin"], r["mic"], r["symbol"])),
        return_dtype=pl.Utf8,
    )
    return conform(
        full.with_columns(pl.coalesce("security_id", derived).alias("security_id")), SYMBOL_MASTER_SCHEMA
    )


IDENTIFIER_CHANGES_SCHEMA: dict[str, pl.DataType] = {
    "security_id": pl.Utf8(),
    "effective_date": pl.Date(),
    "field": pl.Utf8(),
    "old_value": pl.Utf8(),
}
CHANGE_KINDS = {"name": "name_change", "isin": "identifier_change"}


def apply_changes(history: pl.DataFrame, changes: pl.DataFrame) -> pl.DataFrame:
    """History with dated name and ISIN changes: records split at each change's effective date.

    The master holds current values; a change ``(security_id, effective_date, field, old_value)``
    says the field had ``old_value`` before ``effective_date`` (back to the previous change of that
    field). The record spanning the date is split in two, the later part's ``change`` being
    ``name_change`` or ``identifier_change``; records before it take the old value. Hand-written: a
    handful of changes per security, applied latest first so earlier ones reach further back.
    """
    if changes.is_empty():
        return history
    unknown = changes.filter(~pl.col("field").is_in(list(CHANGE_KINDS)))
    if unknown.height:
        raise ValueError(
            f"identifier change field {unknown['field'][0]!r}: expected one of {', '.join(CHANGE_KINDS)}"
        )
    records = history.to_dicts()
    for change in changes.sort("effective_date", descending=True).iter_rows(named=True):
        sid, day, field = change["security_id"], change["effective_date"], change["field"]
        if not any(r["security_id"] == sid for r in records):
            raise ValueError(f"identifier change for security_id {sid}: not in the symbol master")
        out = []
        for record in records:
            end = record["valid_to"] or _AFTER_ALL
            if record["security_id"] == sid and record["valid_from"] < day < end:
                out.append({**record, "valid_to": day, field: change["old_value"]})
                out.append({**record, "valid_from": day, "change": CHANGE_KINDS[field]})
            elif record["security_id"] == sid and end <= day:
                out.append({**record, field: change["old_value"]})
            else:
                out.append(record)
        records = out
    frame = pl.DataFrame(records, schema=SECURITIES_HISTORY_SCHEMA)
    return frame.sort("security_id", "valid_from")
