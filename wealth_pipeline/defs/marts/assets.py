"""dbt models as Dagster assets: staging views and the BI marts, downstream of the Python assets.

Each dbt source names the asset that loads it (``meta.dagster.asset_key`` in
``dbt_project/models/sources.yml``); each model is an asset in group ``marts`` with its dbt tests as
asset checks. The dbt assets share the ``trading_sessions`` partitions and the single-run backfill
policy of the pipeline: a run over a window passes it to dbt as ``--vars {start_date, end_date}``,
which the incremental ``marts.security_daily`` deletes and inserts again. Marts follow their
upstream with ``AutomationCondition.eager()``.
"""

import json
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from wealth_pipeline.defs.marts.project import dbt_connection, dbt_project, prepare_manifest
from wealth_pipeline.defs.partitions import partition_window, single_run, trading_sessions
from wealth_pipeline.defs.resources import WarehouseResource

OWNERS = ["team:analytics-engineering"]


class WealthDbtTranslator(DagsterDbtTranslator):
    """Group ``marts``, owners, eager automation and the description of each model."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "marts"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return OWNERS

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        if dbt_resource_props.get("resource_type") != "model":
            return None
        return dg.AutomationCondition.eager()

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        described = (dbt_resource_props.get("description") or "").strip()
        relation = f"{dbt_resource_props.get('schema')}.{dbt_resource_props.get('alias') or dbt_resource_props['name']}"
        materialized = (dbt_resource_props.get("config") or {}).get("materialized", "")
        return f"{described}\n\ndbt model `{dbt_resource_props['name']}` -> `{relation}` ({materialized}).".strip()


translator = WealthDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_vars(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The session window of this run as dbt vars (a partition, or a single-run backfill range)."""
    start, end = partition_window(context)
    return {"start_date": start.isoformat(), "end_date": end.isoformat()}


@dbt_assets(
    manifest=prepare_manifest(dbt_project),
    project=dbt_project,
    name="marts_dbt",
    dagster_dbt_translator=translator,
    partitions_def=trading_sessions,
    backfill_policy=single_run,
    op_tags={"wealth/warehouse": "marts"},
)
def marts_dbt(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
) -> Iterator[Any]:
    """``dbt build`` of the selected models and their tests over the run's session window."""
    args = ["build", "--vars", json.dumps(dbt_vars(context))]
    with dbt_connection(warehouse.url):
        yield from dbt.cli(args, context=context).stream()
