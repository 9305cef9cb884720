"""Resources shared by every domain, configured from the environment."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from wealth_pipeline.providers.base import MarketDataProvider


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse: where the metric tables live."""

    url: str

    def load_window(self, table: str, frame, **kwargs):  # noqa: ANN001, ANN201 - thin pass-through
        from wealth_pipeline.warehouse.loader import load_window

        return load_window(self.url, table, frame, **kwargs)

    def replace_table(self, table: str, frame, **kwargs):  # noqa: ANN001, ANN201
        from wealth_pipeline.warehouse.loader import replace_table

        return replace_table(self.url, table, frame, **kwargs)

    def connect(self):  # noqa: ANN201
        import psycopg

        return psycopg.connect(self.url)


class MarketDataResource(dg.ConfigurableResource):
    """Where market data comes from: the synthetic market (default), vendor files, or HTTP."""

    provider: str = "synthetic"
    synthetic_seed: int = 7
    synthetic_universe: int = 50
    synthetic_dirty: bool = False
    synthetic_signal_strength: float = 0.0

    def get(self) -> MarketDataProvider:
        if self.provider == "synthetic":
            from wealth_pipeline.providers.synthetic import SyntheticMarket

            return _synthetic(
                self.synthetic_seed, self.synthetic_universe, self.synthetic_dirty, self.synthetic_signal_strength
            )
        raise ValueError(f"unknown provider {self.provider!r}: expected 'synthetic'")


_SYNTHETIC_CACHE: dict[tuple, MarketDataProvider] = {}


def _synthetic(seed: int, universe: int, dirty: bool, signal: float) -> MarketDataProvider:
    """One synthetic market per configuration and process (its generated path is cached)."""
    from wealth_pipeline.providers.synthetic import SyntheticMarket

    key = (seed, universe, dirty, signal)
    if key not in _SYNTHETIC_CACHE:
        _SYNTHETIC_CACHE[key] = SyntheticMarket(
            seed=seed, universe_size=universe, dirty=dirty, signal_strength=signal
        )
    return _SYNTHETIC_CACHE[key]


def today() -> dt.date:
    return dt.date.today()
