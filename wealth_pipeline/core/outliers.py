"""Price outliers that row-level rules cannot see: one-bar spikes and jumps nothing explains.

A *spike* is a bar whose close is at least ``ratio`` times (or at most 1/``ratio`` of) both its
neighbours' closes, e.g. a 100x tick from a vendor's decimal error. A *jump* is an adjusted
close-to-close move larger than ``threshold`` in absolute simple return; after adjustment a real
split or dividend produces no jump, so any jump left is unexplained (e.g. a split the vendor never
reported).
"""

from __future__ import annotations

import polars as pl


def flag_spikes(bars: pl.DataFrame, ratio: float = 20.0) -> pl.Series:
    """Boolean mask (in input order) of one-bar spikes in raw ``close``, per symbol by session date."""
    order = bars.with_row_index("_row").sort(["symbol", "session_date"])
    prev_close = pl.col("close").shift(1).over("symbol")
    next_close = pl.col("close").shift(-1).over("symbol")
    up = (pl.col("close") >= ratio * prev_close) & (pl.col("close") >= ratio * next_close)
    down = (pl.col("close") * ratio <= prev_close) & (pl.col("close") * ratio <= next_close)
    flagged = order.with_columns((up | down).fill_null(False).alias("_spike")).sort("_row")
    return flagged["_spike"]


def unexplained_jumps(adjusted: pl.DataFrame, threshold: float = 0.4) -> pl.DataFrame:
    """Rows whose adjusted close moved more than ``threshold`` since the symbol's previous bar."""
    return (
        adjusted.sort(["symbol", "session_date"])
        .with_columns((pl.col("adj_close") / pl.col("adj_close").shift(1).over("symbol") - 1).alias("adj_return"))
        .filter(pl.col("adj_return").abs() > threshold)
        .select("symbol", "session_date", "close", "adj_close", "adj_return")
    )
