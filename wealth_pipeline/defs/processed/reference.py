"""Processed reference series: corporate actions, FX rates, factor and benchmark returns.

Each reads the current raw versions of its window, validates them (bad rows are quarantined with
their field and reason) and publishes: one processed partition per session and the warehouse
window in one transaction. The datasets are declared in ``defs/datasets.py``.
"""


from collections.abc import Callable, Iterator

import dagster as dg
import polars as pl

from wealth_pipeline.core import validation
from wealth_pipeline.core.bars import trace_rejects
from wealth_pipeline.defs import datasets, publish
from wealth_pipeline.defs.datasets import Dataset
from wealth_pipeline.defs.partitions import partition_window
from wealth_pipeline.defs.processed.bars import OWNERS, WAREHOUSE_TAGS
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.resource import LakehouseResource

DESCRIPTIONS = {
    "corporate_actions": "Validated splits and cash dividends by ex-date; the adjustment of bars reads them.",
    "fx_rates": "Validated daily FX rates (units of quote currency per unit of base currency).",
    "factor_returns": "Daily factor returns (market excess, size, value, momentum) and the daily risk-free rate 'rf'.",
    "benchmark_returns": "Benchmark index levels and daily simple returns.",
}
# Row validation beyond the checks (rejected rows are quarantined); the others are taken as delivered.
VALIDATORS: dict[str, Callable[[pl.DataFrame], validation.ValidationResult]] = {
    "corporate_actions": validation.validate_corporate_actions,
    "fx_rates": validation.validate_fx_rates,
}


def _make(dataset: Dataset) -> dg.AssetsDefinition:
    source = datasets.RAW[dataset.name]
    validate = VALIDATORS.get(dataset.name)

    @publish.dataset_asset(
        dataset,
        deps=[source],
        group_name="processed",
        kinds={"polars", "parquet", "postgres"},
        owners=OWNERS,
        description=f"{DESCRIPTIONS[dataset.name]} Warehouse table: `{dataset.table}`.",
        tags=WAREHOUSE_TAGS,
    )
    def _asset(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        start, end = partition_window(context)
        lake = lakehouse.get()
        delivered = raw.read_current(lake.store, source.lake_dataset, start, end, source.schema, with_source=True)
        numbered = delivered.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))
        rejects = pl.DataFrame(schema=validation.REJECT_SCHEMA)
        if validate is not None and numbered.height:
            result = validate(numbered)
            frame, rejects = result.good, trace_rejects(result.rejects, numbered, dataset.name)
        else:
            frame = numbered.select(list(dataset.schema)).unique(maintain_order=True)
        frame = frame.sort(list(dataset.keys))
        yield from publish.publish(context, dataset, frame, (start, end), lake=lake, warehouse=warehouse,
                                   outcomes=dataset.evaluate(frame), rejects=rejects)

    return _asset


reference_assets = [_make(d) for d in datasets.REFERENCE.values()]
