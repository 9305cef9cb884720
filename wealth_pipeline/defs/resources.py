"""Resources shared by every domain: the one route by which runtime configuration reaches assets, sensors and schedules.

``definitions.build_resources`` binds each field to its ``WEALTH_*`` variable with ``dg.EnvVar``
(``env_or``), so Dagster resolves the value when a run or sensor tick starts and the UI shows which
variable a value comes from; asset, sensor and schedule bodies never read the environment.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from wealth_pipeline.providers.base import MarketDataProvider
from wealth_pipeline.settings import PROVIDERS, ConfigurationError


def env_or(name: str, default: Any) -> Any:
    """``dg.EnvVar(name)`` when the variable is set, else ``default`` (the embedded default).

    Dagster's ``EnvVar`` of an unset variable fails every run that uses it, and most variables are
    optional, so only those that are set are bound; which ones are set is read when the definitions
    load (their values were validated then by ``Settings.from_env()``) and the values when a run starts.
    """
    if os.environ.get(name) in (None, ""):
        return default
    return dg.EnvVar.int(name) if isinstance(default, int) and not isinstance(default, bool) else dg.EnvVar(name)


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse: where the metric tables live."""

    url: str

    @property
    def dbt_login(self) -> tuple[str, bool]:
        """(URL, from its own variable) dbt builds the marts with: ``WEALTH_DBT_DATABASE_URL``, else ``url``.

        dbt creates relations, so it needs an owner's login while the assets run as the loader. Read
        when a run asks (not bound when the definitions load): the CLI's embedded default sets the
        variable after the definitions are imported.
        """
        dbt_url = os.environ.get("WEALTH_DBT_DATABASE_URL")
        return (dbt_url, True) if dbt_url else (self.url, False)

    def load_window(self, table: str, frame, **kwargs):
        from wealth_pipeline.warehouse.loader import load_window

        return load_window(self.url, table, frame, **kwargs)

    def replace_table(self, table: str, frame, **kwargs):
        from wealth_pipeline.warehouse.loader import replace_table

        return replace_table(self.url, table, frame, **kwargs)

    def connect(self):
        import psycopg

        return psycopg.connect(self.url)


HTTP_FIELDS = ("http_bars_url", "http_bars_api_key", "http_bars_rate_limit", "http_fx_url", "http_fx_api_key",
               "http_fx_rate_limit")


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
    # plant an IPO, delistings, a ticker change and index joins/leaves (#21): WEALTH_SYNTHETIC_LIFECYCLE
    synthetic_lifecycle: bool = True
    synthetic_signal_strength: float = 0.0

    landing_uri: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    # The WEALTH_HTTP_* variables (HTTP_ENVIRONMENT), bound with dg.EnvVar by definitions.build_resources
    # (keys never land in run config); all unset: the provider reads the process environment itself.
    http_bars_url: str | None = None
    http_bars_api_key: str | None = None
    http_bars_rate_limit: str | None = None
    http_fx_url: str | None = None
    http_fx_api_key: str | None = None
    http_fx_rate_limit: str | None = None

    http_incomplete_policy: str = "fail"
    http_state_dir: str | None = None
    http_request_deadline_seconds: float = 30.0
    http_fetch_deadline_seconds: float = 3600.0
    http_max_retries: int = 5
    http_backoff_base_seconds: float = 0.5
    http_backoff_max_seconds: float = 30.0
    http_breaker_failures: int = 5
    http_breaker_reset_seconds: float = 60.0

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.provider not in PROVIDERS:  # before any step: fails the run once, never retried
            raise dg.Failure(description=str(ConfigurationError(
                f"WEALTH_PROVIDER={self.provider!r}: expected one of {', '.join(PROVIDERS)}")), allow_retries=False)

    def get(self) -> MarketDataProvider:
        """The configured provider; raises ``ProviderConfigError`` (never worth a retry) when misconfigured."""
        from wealth_pipeline.providers.http_adapters import ProviderConfigError

        if self.provider not in ("synthetic", "vendor", "http"):
            raise ProviderConfigError(f"unknown provider {self.provider!r} (WEALTH_PROVIDER): expected synthetic, "
                                      "vendor or http")
        synthetic = _synthetic(
            self.synthetic_seed, self.synthetic_universe, self.synthetic_dirty, self.synthetic_signal_strength,
            self.synthetic_lifecycle,
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
            return HttpMarketData.from_env(vendor.symbol_master(), supplement=synthetic, env=self.http_environment(),
                                           **self.http_client_options())
        except ProviderConfigError:
            raise
        except ValueError as exc:  # HttpClient's own argument checks
            raise ProviderConfigError(f"market_data http settings: {exc}") from exc

    def http_environment(self) -> dict[str, str] | None:
        """The ``WEALTH_HTTP_*`` values from the resource's fields, or None when none is set."""
        values = {f"WEALTH_{field.upper()}": getattr(self, field) for field in HTTP_FIELDS}
        return {name: value for name, value in values.items() if value} or None

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


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go (``WEALTH_ALERT_WEBHOOK_URL``): failed runs, late data. Unset: alerts are logged only."""

    webhook_url: str | None = None

    def send(self, payload: dict[str, Any], log: Any, what: str) -> bool:
        """POST ``payload`` as JSON to the webhook (or log it when none is set); True when posted."""
        from wealth_pipeline.defs.automation.alerts import send_alert

        return send_alert(payload, log, what, webhook_url=self.webhook_url or "")


class ModelRetrainResource(dg.ConfigurableResource):
    """When ``model_retrain_sensor`` asks for training: after ``min_new_sessions`` new sessions (``WEALTH_MODEL_RETRAIN_SESSIONS``)."""

    min_new_sessions: int = 20

    def threshold(self) -> int:
        if self.min_new_sessions < 1:
            raise dg.Failure(description=f"WEALTH_MODEL_RETRAIN_SESSIONS={self.min_new_sessions}: expected a whole number >= 1",
                             allow_retries=False)
        return self.min_new_sessions


_SYNTHETIC_CACHE: dict[tuple, MarketDataProvider] = {}


def _synthetic(seed: int, universe: int, dirty: bool, signal: float, lifecycle: bool = True) -> MarketDataProvider:
    """One synthetic market per configuration and process (its generated path is cached)."""
    from wealth_pipeline.providers.synthetic import SyntheticMarket  # heavy: imported on first use

    key = (seed, universe, dirty, signal, lifecycle)
    if key not in _SYNTHETIC_CACHE:
        _SYNTHETIC_CACHE[key] = SyntheticMarket(
            seed=seed, universe_size=universe, dirty=dirty, signal_strength=signal, lifecycle=lifecycle
        )
    return _SYNTHETIC_CACHE[key]
