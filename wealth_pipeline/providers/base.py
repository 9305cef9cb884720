"""The one interface every market data source implements, and the schemas of what it returns.

Every method returns a polars frame with exactly the columns and dtypes of ``core.schemas``
(re-exported here), for an inclusive date window. Key columns carry the same names everywhere: ``symbol``, ``session_date``, ``currency``.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import polars as pl

# The schemas live in core (the compute needs them and must not import upward); re-exported here
# because they are what every provider returns.
from wealth_pipeline.core.schemas import (  # noqa: F401
    BARS_SCHEMA,
    BENCHMARK_RETURNS_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    FACTOR_RETURNS_SCHEMA,
    FACTORS,
    FX_RATES_SCHEMA,
    RISK_FREE_FACTOR,
    SYMBOL_MASTER_SCHEMA,
    conform,
    empty_frame,
)


@runtime_checkable
class MarketDataProvider(Protocol):
    """A source of market data for inclusive date windows."""

    name: str

    def symbol_master(self) -> pl.DataFrame: ...

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame: ...

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame: ...

    def fx_rates(self, start: dt.date, end: dt.date) -> pl.DataFrame: ...

    def factor_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame: ...

    def benchmark_returns(self, start: dt.date, end: dt.date) -> pl.DataFrame: ...
