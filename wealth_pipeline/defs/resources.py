"""Resources shared by every domain, configured from the environment."""

from __future__ import annotations

import dagster as dg

from wealth_pipeline.providers.base import MarketDataProvider


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse: where the metric tables live."""

    url: str

    def load_window(self, table: str, frame, **kwargs):
        from wealth_pipeline.warehouse.loader import load_window

        return load_window(self.url, table, frame, **kwargs)

    def replace_table(self, table: str, frame, **kwargs):
        from wealth_pipeline.warehouse.loader import replace_table

        return replace_table(self.url, table, frame, **kwargs)

    def connect(self):
        import psycopg

        return psycopg.connect(self.url)


class MarketDataResource(dg.ConfigurableResource):
    """Where market data comes from: the synthetic market (default), vendor files, or HTTP."""

    provider: str = "synthetic"
    synthetic_seed: int = 7
    synthetic_universe: int = 50
    synthetic_dirty: bool = False
    synthetic_signal_strength: float = 0.0

    landing_uri: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    def get(self) -> MarketDataProvider:
        synthetic = _synthetic(
            self.synthetic_seed, self.synthetic_universe, self.synthetic_dirty, self.synthetic_signal_strength
        )
        if self.provider == "synthetic":
            return synthetic
        if self.provider in ("vendor", "http"):
            if not self.landing_uri:
                raise ValueError(f"provider {self.provider!r} needs a landing zone (WEALTH_LANDING_URI)")
            from wealth_pipeline.providers.landing import LandingZone, VendorFileProvider

            vendor = VendorFileProvider(
                LandingZone.from_uri(self.landing_uri, self.s3_endpoint_url, self.s3_region), reference=synthetic
            )
            if self.provider == "vendor":
                return vendor
            from wealth_pipeline.providers.http_adapters import HttpMarketData

            # HTTP bars/FX for the securities of the landing zone's symbol master; the synthetic
            # market supplies the factor returns the HTTP sources do not carry (flagged synthetic).
            return HttpMarketData.from_env(vendor.symbol_master(), supplement=synthetic)
        raise ValueError(f"unknown provider {self.provider!r}: expected synthetic, vendor or http")


_SYNTHETIC_CACHE: dict[tuple, MarketDataProvider] = {}


def _synthetic(seed: int, universe: int, dirty: bool, signal: float) -> MarketDataProvider:
    """One synthetic market per configuration and process (its generated path is cached)."""
    from wealth_pipeline.providers.synthetic import SyntheticMarket  # heavy: imported on first use

    key = (seed, universe, dirty, signal)
    if key not in _SYNTHETIC_CACHE:
        _SYNTHETIC_CACHE[key] = SyntheticMarket(
            seed=seed, universe_size=universe, dirty=dirty, signal_strength=signal
        )
    return _SYNTHETIC_CACHE[key]
