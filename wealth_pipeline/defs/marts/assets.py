"""dbt models as Dagster assets: staging views and the BI marts, downstream of the Python assets.

Each dbt source names the asset that loads it (``meta.dagster.asset_key`` in
``dbt_project/models/sources.yml``); each model is an asset in group ``marts`` with its dbt tests as
asset checks. The dbt assets share the ``trading_sessions`` partitions and the single-run backfill
policy of the pipeline: a run over a window passes it to dbt in the environment
(``WEALTH_DBT_START_DATE``/``_END_DATE``, read by ``macros/session_window.sql`` like the
``start_date``/``end_date`` vars a hand-run ``dbt build`` may pass), and the incremental
``marts.security_daily`` deletes and inserts that window again. Marts follow their
upstream with ``AutomationCondition.eager()``.
"""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from psycopg import sql

from wealth_pipeline.defs import lineage
from wealth_pipeline.defs.marts.project import (
    dbt_connection,
    dbt_project,
    keep_partial_parse,
    prepare_manifest,
    require_owner_login,
)
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


def missing_upstream_relations(manifest: Mapping[str, Any], selected: set[dg.AssetKey], url: str) -> list[str]:
    """One line per selected model whose unselected upstream model has no relation in the warehouse.

    A run that selects part of the marts (a UI selection, a job) assumes their upstream views exist;
    on a warehouse where they were never built dbt would fail mid-build on "relation does not exist".
    Checked first, so the error names what to materialize. Ephemeral models have no relation.
    """
    models = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    key_of = {uid: dg.AssetKey([n["config"].get("schema") or n["schema"], n["name"]]) for uid, n in models.items()}
    chosen = {uid for uid, key in key_of.items() if key in selected}
    needed = sorted({(uid, parent) for uid in chosen for parent in models[uid]["depends_on"]["nodes"]
                     if parent in models and parent not in chosen and models[parent]["config"]["materialized"] != "ephemeral"})
    problems = []
    with psycopg.connect(url) as conn:
        for uid, parent in needed:
            relation = sql.Identifier(models[parent]["schema"], models[parent]["alias"]).as_string(conn)
            if conn.execute("SELECT to_regclass(%s)", (relation,)).fetchone()[0] is None:
                problems.append(f"{key_of[uid].to_user_string()} reads {models[parent]['schema']}.{models[parent]['alias']}, "
                                f"which does not exist yet: materialize {key_of[parent].to_user_string()} with it "
                                "(or the whole marts group)")
    return problems


MANIFEST_PATH: Path = prepare_manifest(dbt_project)


@dbt_assets(
    manifest=MANIFEST_PATH,
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
    """``dbt build`` of the selected models and their tests over the run's session window.

    dbt connects with the owner login (``WEALTH_DBT_DATABASE_URL``, else the warehouse resource's URL);
    a login that cannot act as the owner is a configuration error, never retried.
    """
    args = ["build"]
    url, from_dbt_variable = warehouse.dbt_login
    try:
        require_owner_login(url, from_dbt_variable=from_dbt_variable)
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    # dbt's login looks for the upstream relations: the loader has no USAGE on dbt's schemas.
    missing = missing_upstream_relations(json.loads(MANIFEST_PATH.read_text()), set(context.selected_asset_keys), url)
    if missing:
        raise dg.Failure(description="; ".join(missing), allow_retries=False)
    start, end = partition_window(context)
    with dbt_connection(url, window=(start, end)):  # each mart's materialization shows its inputs' sources (issue 22)
        invocation = dbt.cli(args, context=context)
        for event in invocation.stream():
            yield lineage.with_mart_sources(context, event, warehouse.url, MANIFEST_PATH, start, end)
    keep_partial_parse(invocation.target_path)
