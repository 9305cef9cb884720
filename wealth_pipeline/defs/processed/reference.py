"""Processed reference series: corporate actions, FX rates, factor and benchmark returns.

Each reads the current raw versions of its window, validates them (bad rows are quarantined with
their field and reason), writes one processed partition per session and loads the warehouse
window in one transaction.
"""


from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import polars as pl

from wealth_pipeline.core import validation
from wealth_pipeline.defs import quality
from wealth_pipeline.defs.partitions import partition_window, single_run, trading_sessions
from wealth_pipeline.defs.processed.bars import trace_rejects
from wealth_pipeline.defs.processed.common import (
    OWNERS,
    WAREHOUSE_RETRY,
    WAREHOUSE_TAGS,
    preview,
    quarantine,
    reconcile,
    write_window,
)
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.providers import base


def _gx():
    import great_expectations as gx

    return gx.expectations


@dataclass(frozen=True)
class ReferenceDataset:
    name: str
    schema: dict[str, pl.DataType]
    date_column: str
    keys: tuple[str, ...]
    table: str
    description: str
    validate: Callable[[pl.DataFrame], validation.ValidationResult] | None
    expectations: Callable[[], list]


REFERENCE_DATASETS: tuple[ReferenceDataset, ...] = (
    ReferenceDataset(
        "corporate_actions", base.CORPORATE_ACTIONS_SCHEMA, "ex_date", ("symbol", "ex_date", "action_type"),
        "market.corporate_actions",
        "Validated splits and cash dividends by ex-date; the adjustment of bars reads them.",
        lambda frame: validation.validate_corporate_actions(frame),
        lambda: [
            _gx().ExpectColumnValuesToBeInSet(column="action_type", value_set=["split", "dividend"]),
            _gx().ExpectColumnValuesToNotBeNull(column="symbol"),
        ],
    ),
    ReferenceDataset(
        "fx_rates", base.FX_RATES_SCHEMA, "session_date", ("base_currency", "quote_currency", "session_date"),
        "market.fx_rates",
        "Validated daily FX rates (units of quote currency per unit of base currency).",
        lambda frame: validation.validate_fx_rates(frame),
        lambda: [
            _gx().ExpectColumnValuesToBeBetween(column="rate", min_value=0, strict_min=True),
            _gx().ExpectColumnValuesToNotBeNull(column="rate"),
        ],
    ),
    ReferenceDataset(
        "factor_returns", base.FACTOR_RETURNS_SCHEMA, "session_date", ("factor", "session_date"),
        "market.factor_returns",
        "Daily factor returns (market excess, size, value, momentum) and the daily risk-free rate 'rf'.",
        None,
        lambda: [
            _gx().ExpectColumnValuesToBeInSet(column="factor", value_set=[*base.FACTORS, base.RISK_FREE_FACTOR]),
            _gx().ExpectColumnValuesToBeBetween(column="value", min_value=-0.5, max_value=0.5),
            _gx().ExpectColumnValuesToNotBeNull(column="value"),
        ],
    ),
    ReferenceDataset(
        "benchmark_returns", base.BENCHMARK_RETURNS_SCHEMA, "session_date", ("benchmark", "session_date"),
        "market.benchmark_returns",
        "Benchmark index levels and daily simple returns.",
        None,
        lambda: [
            _gx().ExpectColumnValuesToBeBetween(column="level", min_value=0, strict_min=True),
            _gx().ExpectColumnValuesToBeBetween(column="return", min_value=-0.5, max_value=0.5),
        ],
    ),
)


def _checks(dataset: ReferenceDataset) -> list[quality.Check]:
    return [
        quality.Check("schema", f"{dataset.name} has the documented columns and types.",
                      predicate=quality.has_columns(dataset.schema)),
        quality.Check("keys_unique", f"One row per {', '.join(dataset.keys)}.",
                      predicate=quality.unique_keys(dataset.keys)),
        quality.Check("values_in_range", "Not-null and range expectations (Great Expectations suite).",
                      expectations=dataset.expectations),
    ]


RECONCILE = "warehouse_reconciles"


def _make(dataset: ReferenceDataset) -> dg.AssetsDefinition:
    checks = _checks(dataset)
    specs = [c.spec(dataset.name) for c in checks] + [
        dg.AssetCheckSpec(RECONCILE, asset=dataset.name, description=f"{dataset.table} holds exactly the rows of the processed tier for the window.")
    ]

    @dg.asset(
        name=dataset.name,
        group_name="processed",
        deps=[f"raw_{dataset.name}"],
        partitions_def=trading_sessions,
        backfill_policy=single_run,
        kinds={"polars", "parquet", "postgres"},
        owners=OWNERS,
        description=f"{dataset.description} Warehouse table: `{dataset.table}`.",
        check_specs=specs,
        retry_policy=WAREHOUSE_RETRY,
        tags=WAREHOUSE_TAGS,
    )
    def _asset(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        start, end = partition_window(context)
        lake = lakehouse.get()
        delivered = raw.read_current(lake.store, dataset.name, start, end, dataset.schema, with_source=True)
        numbered = delivered.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))
        rejects = pl.DataFrame(schema=validation.REJECT_SCHEMA)
        if dataset.validate is not None and numbered.height:
            result = dataset.validate(numbered)
            frame, rejects = result.good, trace_rejects(result.rejects, numbered, dataset.name)
        else:
            frame = numbered.select(list(dataset.schema)).unique(maintain_order=True)
        frame = frame.sort(list(dataset.keys))
        outcomes = quality.evaluate(frame, checks, dataset.name)
        failed = quality.blocking_failures(outcomes)
        yield from (o.to_result(context.asset_key) for o in outcomes)
        if failed:
            yield dg.AssetCheckResult(check_name=RECONCILE, passed=False, description="not loaded: blocking checks failed")
            raise dg.Failure(quality.failure_message(dataset.name, outcomes))
        quarantined = quarantine(lake, dataset.name, rejects, start, end, context.run_id)
        written = write_window(lake, dataset.name, frame, dataset.date_column, start, end)
        load = warehouse.load_window(
            dataset.table, frame, time_column=dataset.date_column, window_start=start, window_end=end,
            asset=dataset.name, partition_key=f"{start}..{end}", run_id=context.run_id,
        )
        passed, details = reconcile(warehouse.url, dataset.table, dataset.date_column, start, end, frame.height)
        yield dg.AssetCheckResult(check_name=RECONCILE, passed=passed, metadata=details)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
        "path": dg.MetadataValue.path(lake.store.uri(f"processed/{dataset.name}")),
                "partitions_written": written,
                "rejected_rows": rejects.height,
                "quarantine": quarantined or "none",
                "warehouse_table": dataset.table,
                "warehouse_checksum": load.checksum,
                "preview": preview(frame),
            }
        )

    return _asset


reference_assets = [_make(d) for d in REFERENCE_DATASETS]

