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
    """Where market data comes from: the synthetic market (default), vendor files, or HTTP.

    The ``http_*`` fields tune the HTTP providers (README, "HTTP providers"): the total deadline of
    one request and of one asset's fetch, retries and backoff, the circuit breaker (shared by every
    client of a vendor in the process; its open/closed state is kept in ``http_state_dir``, default
    ``$WEALTH_HOME/http``, so the next run sees it), and what ``raw_bars`` does with a symbol that
    still fails after its retries: ``fail`` the step (default; what was fetched is kept in the raw
    tier and a step retry or re-run asks only for the rest) or ``complete_others`` (write the
    others and fail the blocking ``http_fetch_complete`` check).
    """

    provider: str = "synthetic"
    synthetic_seed: int = 7
    synthetic_universe: int = 50
    synthetic_dirty: bool = False
    synthetic_signal_strength: float = 0.0

    landing_uri: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    http_incomplete_policy: str = "fail"
    http_state_dir: str | None = None
    http_request_deadline_seconds: float = 30.0
    http_fetch_deadline_seconds: float = 3600.0
    http_max_retries: int = 5
    http_backoff_base_seconds: float = 0.5
    http_backoff_max_seconds: float = 30.0
    http_breaker_failures: int = 5
    http_breaker_reset_seconds: float = 60.0

    def get(self) -> MarketDataProvider:
        """The configured provider; raises ``ProviderConfigError`` (never worth a retry) when misconfigured."""
        from wealth_pipeline.providers.http_adapters import ProviderConfigError

        if self.provider not in ("synthetic", "vendor", "http"):
            raise ProviderConfigError(f"unknown provider {self.provider!r} (WEALTH_PROVIDER): expected synthetic, "
                                      "vendor or http")
        synthetic = _synthetic(
            self.synthetic_seed, self.synthetic_universe, self.synthetic_dirty, self.synthetic_signal_strength
        )
        if self.provider == "synthetic":
            return synthetic
        if not self.landing_uri:
            raise ProviderConfigError(f"provider {self.provider!r} needs a landing zone (WEALTH_LANDING_URI)")
        from wealth_pipeline.providers.landing import LandingZone, VendorFileProvider

        vendor = VendorFileProvider(
            LandingZone.from_uri(self.landing_uri, self.s3_endpoint_url, self.s3_region), reference=synthetic
        )
        if self.provider == "vendor":
            return vendor
        from wealth_pipeline.providers.http_adapters import HttpMarketData

        if self.http_incomplete_policy not in ("fail", "complete_others"):
            raise ProviderConfigError(f"market_data.http_incomplete_policy must be 'fail' or 'complete_others', "
                                      f"got {self.http_incomplete_policy!r}")
        if not self.http_fetch_deadline_seconds > 0:
            raise ProviderConfigError(f"market_data.http_fetch_deadline_seconds must be positive, "
                                      f"got {self.http_fetch_deadline_seconds}")
        try:
            # HTTP bars/FX for the securities of the landing zone's symbol master; the synthetic
            # market supplies the factor returns the HTTP sources do not carry (flagged synthetic).
            return HttpMarketData.from_env(vendor.symbol_master(), supplement=synthetic, **self.http_client_options())
        except ProviderConfigError:
            raise
        except ValueError as exc:  # HttpClient's own argument checks
            raise ProviderConfigError(f"market_data http settings: {exc}") from exc

    def http_client_options(self) -> dict[str, object]:
        """Options every HTTP client of this resource gets."""
        from wealth_pipeline.settings import wealth_home

        return {
            "timeout": self.http_request_deadline_seconds,
            "max_retries": self.http_max_retries,
            "backoff_base": self.http_backoff_base_seconds,
            "backoff_max": self.http_backoff_max_seconds,
            "breaker_failures": self.http_breaker_failures,
            "breaker_reset_seconds": self.http_breaker_reset_seconds,
            "state_dir": self.http_state_dir or str(wealth_home() / "http"),
        }


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
