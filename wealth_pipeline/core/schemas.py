"""The schemas of every dataset the pipeline exchanges: provider deliveries and processed outputs.

Pure declarations (column name -> polars dtype) shared by ``core`` and the layers above it, so the
compute never imports from ``providers``. Key columns carry the same names everywhere: ``symbol``,
``session_date``, ``currency``. Column descriptions live with the dataset registry
(``wealth_pipeline.defs.datasets``), which publishes them as Dagster column schemas.
"""

from __future__ import annotations

import polars as pl

SYMBOL_MASTER_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "name": pl.Utf8(),
    "exchange": pl.Utf8(),  # NYSE, NASDAQ, TSX: a key of core.calendars.EXCHANGE_CALENDAR_CODES
    "currency": pl.Utf8(),  # ISO 4217 code of the listing
    "asset_class": pl.Utf8(),  # equity, etf, index
    "sector": pl.Utf8(),
    "is_synthetic": pl.Boolean(),
    # Identity (issue 21; core.identifiers): one row per symbol a security has used, so a ticker
    # change is two rows sharing security_id, each valid over [valid_from, valid_to).
    "security_id": pl.Utf8(),  # permanent internal id (core.identifiers.security_id)
    "isin": pl.Utf8(),
    "cusip": pl.Utf8(),
    "figi": pl.Utf8(),
    "mic": pl.Utf8(),  # ISO 10383 code of the listing exchange
    "country": pl.Utf8(),  # domicile, ISO 3166 alpha-2
    "security_type": pl.Utf8(),  # STOCK, ETF, ...
    "industry": pl.Utf8(),
    "dividend_currency": pl.Utf8(),
    "valid_from": pl.Date(),  # first date this symbol identified the security (null: before the data)
    "valid_to": pl.Date(),  # first date it no longer did (delisting or ticker change); null while current
}

BARS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "session_date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "currency": pl.Utf8(),
}

# action_type is "split" (ratio = new shares per old share, e.g. 4.0 for a 4-for-1) or
# "dividend" (amount = cash per share in ``currency``, paid to holders before ex_date).
# distribution_type tells several distributions of one ex-date apart (issue 14; MSFT 2004-11-15:
# a 3.00 special and a 0.08 regular dividend): DISTRIBUTION_TYPES; a split is always "split".
# Key: (symbol, ex_date, action_type, distribution_type).
CORPORATE_ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "ex_date": pl.Date(),
    "action_type": pl.Utf8(),
    "ratio": pl.Float64(),
    "amount": pl.Float64(),
    "currency": pl.Utf8(),
    "distribution_type": pl.Utf8(),  # optional in vendor files: regular (dividends) / split (splits)
}
# Valid distribution_type per action_type; the first is the default when a vendor sends none.
DISTRIBUTION_TYPES: dict[str, tuple[str, ...]] = {
    "dividend": ("regular", "special", "supplemental", "capital_gain", "return_of_capital"),
    "split": ("split",),
}

# rate = units of quote_currency for one unit of base_currency (USD/CAD 1.35: 1 USD = 1.35 CAD).
FX_RATES_SCHEMA: dict[str, pl.DataType] = {
    "session_date": pl.Date(),
    "base_currency": pl.Utf8(),
    "quote_currency": pl.Utf8(),
    "rate": pl.Float64(),
}

# Long format, Fama-French convention: "market" is the market's excess return over "rf", the daily
# risk-free rate; "size", "value", "momentum" are long-short factor returns. Simple daily returns.
FACTOR_RETURNS_SCHEMA: dict[str, pl.DataType] = {
    "session_date": pl.Date(),
    "factor": pl.Utf8(),
    "value": pl.Float64(),
}

BENCHMARK_RETURNS_SCHEMA: dict[str, pl.DataType] = {
    "session_date": pl.Date(),
    "benchmark": pl.Utf8(),
    "level": pl.Float64(),
    "return": pl.Float64(),  # simple return from the previous session's level
}

FACTORS: tuple[str, ...] = ("market", "size", "value", "momentum")
RISK_FREE_FACTOR = "rf"

# Source lineage per row (issue 22): the rights-registry key of the provider that delivered the row
# (the synthetic market, the landing-zone vendor its file's path names, the HTTP adapter). Not part
# of what a vendor file holds (the delivery schemas above): the raw ingest adds it to every row.
SOURCE_COLUMN = "source"


def with_source(schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    """``schema`` plus the per-row ``source`` column: what the raw and processed tiers store."""
    return {**schema, SOURCE_COLUMN: pl.Utf8()}


def empty_frame(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with ``schema``: what a provider returns for a window with no data."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast ``frame`` to ``schema`` (raises if a column is missing)."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"missing columns {missing}; expected {list(schema)}")
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


# ---- processed outputs ------------------------------------------------------------------------------
# Processed bars: raw prices and POINT-IN-TIME factors (core/adjustments.py: they depend only on the
# actions with ex_date <= the session): cum_factor G(t), adj_factor = 1/G(t), adj_* = raw * adj_factor.
PROCESSED_BARS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(), "session_date": pl.Date(), "exchange": pl.Utf8(), "currency": pl.Utf8(),
    "open": pl.Float64(), "high": pl.Float64(), "low": pl.Float64(), "close": pl.Float64(), "volume": pl.Int64(),
    "split_factor": pl.Float64(), "dividend_factor": pl.Float64(), "adj_factor": pl.Float64(),
    "adj_open": pl.Float64(), "adj_high": pl.Float64(), "adj_low": pl.Float64(), "adj_close": pl.Float64(),
    "adj_volume": pl.Float64(), "source": pl.Utf8(), "cum_factor": pl.Float64(),
    "security_id": pl.Utf8(),  # stable id from the symbol master (issue 21): one series across ticker changes
}

# One row per symbol and ex-date (several actions of a day combined): the backward price factor,
# the volume factor (split ratio) and the cumulative products through the ex-date.
ADJUSTMENT_FACTORS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(), "ex_date": pl.Date(), "factor": pl.Float64(), "volume_factor": pl.Float64(),
    "cum_factor": pl.Float64(), "cum_volume_factor": pl.Float64(),
}

# The stable id from the symbol master (issue 21) on the processed corporate actions and factor rows,
# what the lake tiers and market.corporate_actions / market.adjustment_factors store (migration 0015):
# the symbol's security_id, so a ticker change keeps one id. Not part of the delivery schema above nor
# of the factor compute's base (core/adjustments.py works on ADJUSTMENT_FACTORS_SCHEMA and chains by
# security_id when the frames carry it, by symbol otherwise).
PROCESSED_CORPORATE_ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    **with_source(CORPORATE_ACTIONS_SCHEMA), "security_id": pl.Utf8(),
}
PROCESSED_ADJUSTMENT_FACTORS_SCHEMA: dict[str, pl.DataType] = {**ADJUSTMENT_FACTORS_SCHEMA, "security_id": pl.Utf8()}

PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(), "session_date": pl.Date(), "model_id": pl.Utf8(), "score": pl.Float64(), "rank": pl.Int32(),
    "security_id": pl.Utf8(),  # the scored bar's stable id (issue 21)
}
