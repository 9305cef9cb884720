"""The one Definitions object, composed from the domain folders under ``defs/``."""

from __future__ import annotations

import importlib
import importlib.util

import dagster as dg

from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.settings import Settings

# Each domain is a package under defs/ exposing ``defs: dg.Definitions``; the order is the data flow.
DOMAINS: tuple[str, ...] = ("ingest", "processed", "analytics", "portfolio", "models", "marts", "operations")


def domain_definitions() -> list[dg.Definitions]:
    """The ``defs`` of every domain package that exists."""
    found = []
    for domain in DOMAINS:
        module_name = f"wealth_pipeline.defs.{domain}"
        if importlib.util.find_spec(module_name) is not None:
            found.append(importlib.import_module(module_name).defs)
    return found


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources from the environment: warehouse URL, lakehouse URI, market data provider."""
    settings = settings or Settings.from_env()
    return {
        "warehouse": WarehouseResource(url=dg.EnvVar("WEALTH_DATABASE_URL")),
        "lakehouse": LakehouseResource(
            uri=settings.lakehouse_uri, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
        ),
        "market_data": MarketDataResource(
            provider=settings.provider,
            synthetic_seed=settings.synthetic_seed,
            synthetic_universe=settings.synthetic_universe,
            landing_uri=settings.landing_uri,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
        ),
    }


def build_definitions(resources: dict[str, dg.ConfigurableResource] | None = None) -> dg.Definitions:
    """All domains with the given resources (default: from the environment).

    Resources given here override the defaults from the environment key by key.
    """
    from wealth_pipeline.defs import automation

    assets = dg.Definitions.merge(
        *domain_definitions(),
        # One process per run, not per step: the daily graph is mostly a chain, each step's work is
        # vectorized, and a per-step process re-imports the code (dbt manifest included) every time.
        dg.Definitions(resources={**build_resources(), **(resources or {})}, executor=dg.in_process_executor),
    )
    from wealth_pipeline.defs import operations

    graph = assets.resolve_asset_graph()
    return dg.Definitions.merge(assets, automation.build(graph), operations.build_freshness(graph))


defs = build_definitions()
