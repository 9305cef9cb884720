"""The one Definitions object: every domain under ``defs/`` plus the project-wide policies, in one place.

Dagster's project layout (``[tool.dg]`` in pyproject.toml): ``dg.load_from_defs_folder`` loads each
module of ``wealth_pipeline/defs/`` (a domain's ``Definitions`` or its top-level assets, checks,
jobs, schedules and sensors), so ``dg check defs``, ``dg list defs`` and ``dg dev`` see what
``wealth-pipeline`` runs. What applies to every domain is added here, once: the resources (the one
route of runtime configuration, each field bound to its ``WEALTH_*`` variable with ``dg.EnvVar``)
and the in-process executor. Retry policies stay on the assets (provider and warehouse steps);
configuration and blocking data-quality errors are ``dg.Failure(allow_retries=False)`` wherever
they are raised, so no policy retries them.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from pathlib import Path

import dagster as dg

from wealth_pipeline.defs.resources import (
    HTTP_FIELDS,
    AlertsResource,
    MarketDataResource,
    ModelRetrainResource,
    WarehouseResource,
    env_or,
)
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.settings import DEFAULT_MODEL_RETRAIN_SESSIONS, Settings

PACKAGE_DIR = Path(__file__).resolve().parent


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Every resource, each field a ``dg.EnvVar`` of its variable when set (else the embedded default).

    ``Settings.from_env()`` validates every ``WEALTH_*`` variable first, so a bad value stops the
    code location from loading with one line naming it (``ConfigurationError``), before any run.
    """
    settings = settings or Settings.from_env()
    s3 = {"s3_endpoint_url": env_or("WEALTH_S3_ENDPOINT_URL", None), "s3_region": env_or("WEALTH_S3_REGION", "us-east-1")}
    return {
        "warehouse": WarehouseResource(url=dg.EnvVar("WEALTH_DATABASE_URL")),
        "lakehouse": LakehouseResource(uri=env_or("WEALTH_LAKEHOUSE_URI", str(settings.home / "lakehouse")), **s3),
        "market_data": MarketDataResource(
            provider=env_or("WEALTH_PROVIDER", "synthetic"),
            synthetic_seed=env_or("WEALTH_SYNTHETIC_SEED", 7),
            synthetic_universe=env_or("WEALTH_SYNTHETIC_UNIVERSE", 50),
            # dg.EnvVar binds str and int fields only: this flag is the value validated when the definitions load
            synthetic_lifecycle=settings.synthetic_lifecycle,
            landing_uri=env_or("WEALTH_LANDING_URI", str(settings.home / "landing")),
            **s3,
            **{field: env_or(f"WEALTH_{field.upper()}", None) for field in HTTP_FIELDS},
        ),
        "alerts": AlertsResource(webhook_url=env_or("WEALTH_ALERT_WEBHOOK_URL", None)),
        "model_retrain": ModelRetrainResource(
            min_new_sessions=env_or("WEALTH_MODEL_RETRAIN_SESSIONS", DEFAULT_MODEL_RETRAIN_SESSIONS)),
    }


def load_domains() -> dg.Definitions:
    """Everything under ``wealth_pipeline/defs/``, as Dagster's tooling loads it.

    The project's component tree built at the defs folder, which is what ``dg.load_from_defs_folder``
    builds minus the catalogue of every installed plugin's component types it adds at the root
    (repository metadata for ``dg``'s scaffolding): that imports ``dagster_aws.components`` and
    snapshots each type, 3.5 s of every load on the loaded 2-core box (issue 23).
    """
    tree = dg.ComponentTree.for_project(path_within_project=PACKAGE_DIR)
    return tree.build_defs(tree.defs_module_path)


def domain_definitions(*domains: str) -> dg.Definitions:
    """Some domains alone (e.g. a test's slice of the graph), without resources, loaded as
    ``load_from_defs_folder`` loads them: a module's ``Definitions`` object, else its top-level
    definitions."""
    parts = []
    for domain in domains:
        package = importlib.import_module(f"wealth_pipeline.defs.{domain}")
        modules = [package, *(importlib.import_module(f"{package.__name__}.{info.name}")
                              for info in pkgutil.iter_modules(package.__path__)
                              if not info.ispkg and info.name != "__main__")]
        for module in modules:
            found = [value for value in vars(module).values() if isinstance(value, dg.Definitions)]
            if found:
                parts.extend(found)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dg.PreviewWarning)
                parts.append(dg.load_definitions_from_module(module))
    return dg.Definitions.merge(*parts)


def build_definitions(resources: dict[str, dg.ConfigurableResource] | None = None) -> dg.Definitions:
    """All domains with the project-wide policies; ``resources`` override the environment's key by key."""
    domains = load_domains()
    policies = dg.Definitions(
        resources={**build_resources(), **(resources or {})},
        # One process per run, not per step: the daily graph is mostly a chain, each step's work is
        # vectorized, and a per-step process re-imports the code (dbt manifest included) every time.
        executor=dg.in_process_executor,
    )
    merged = dg.Definitions.merge(domains, policies)
    # The freshness checks cover every daily asset of the code location, whatever domains exist, so
    # they are built from the merged graph (defs/operations/freshness.py).
    from wealth_pipeline.defs.operations import build_freshness

    return dg.Definitions.merge(merged, build_freshness(merged.resolve_asset_graph()))


defs = build_definitions()
