"""The one Definitions object, composed from the domain folders under ``defs/``."""

from __future__ import annotations

import dagster as dg

from wealth_pipeline.defs import analytics, ingest, processed
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.settings import Settings


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
    """All domains with the given resources (default: from the environment)."""
    return dg.Definitions.merge(
        ingest.defs,
        processed.defs,
        analytics.defs,
        dg.Definitions(resources=resources or build_resources()),
    )


defs = build_definitions()
