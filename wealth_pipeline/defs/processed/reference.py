"""Processed reference series: corporate actions, FX rates, factor and benchmark returns.

Each reads the current raw versions of its window, validates them (bad rows are quarantined with
their field and reason) and publishes: one processed partition per session and the warehouse
window in one transaction. The datasets are declared in ``defs/datasets.py``.

Corporate actions also read the symbol master (issue 21): an action of a symbol it does not know is
rejected like a bar's (quarantined with its file, row and field), and every published action carries
the ``security_id`` of its symbol (``core/universe.with_security_ids``; a ticker change keeps one id),
which the blocking ``security_id_known`` check requires.
"""


from collections.abc import Callable, Iterator
from functools import partial

import dagster as dg
import polars as pl

from wealth_pipeline.core import universe, validation
from wealth_pipeline.core.bars import trace_rejects
from wealth_pipeline.core.schemas import SOURCE_COLUMN
from wealth_pipeline.defs import datasets, lineage, publish
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
# corporate_actions' validator also gets the symbol master's symbols (known_symbols: unknown ones rejected).
VALIDATORS: dict[str, Callable[..., validation.ValidationResult]] = {
    "corporate_actions": validation.validate_corporate_actions,
    "fx_rates": validation.validate_fx_rates,
}
# The datasets keyed by security: they read the symbol master and carry each row's security_id.
ON_SECURITY_ID = frozenset({"corporate_actions"})


def _validate_per_source(
    validate: Callable[[pl.DataFrame], validation.ValidationResult], numbered: pl.DataFrame, name: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good rows (each with its ``source``) and traced rejects: the rows of each provider validated together.

    The validators keep the delivery columns only, so each provider's rows are validated as one group and
    its good rows get its source back. A key delivered by two providers in one partition cannot come from the
    raw assets (a landing key's later file wins); if it did, ``keys_unique`` fails the publication.
    """
    goods, rejects = [], []
    for (provider,), rows in numbered.group_by(SOURCE_COLUMN, maintain_order=True):
        result = validate(rows)
        goods.append(result.good.with_columns(pl.lit(provider, dtype=pl.Utf8).alias(SOURCE_COLUMN)))
        rejects.append(trace_rejects(result.rejects, rows, name))
    return pl.concat(goods, how="vertical_relaxed"), pl.concat(rejects, how="diagonal_relaxed")


def _make(dataset: Dataset) -> dg.AssetsDefinition:
    source = datasets.RAW[dataset.name]
    validate = VALIDATORS.get(dataset.name)
    on_security_id = dataset.name in ON_SECURITY_ID

    @publish.dataset_asset(
        dataset,
        deps=[source, datasets.SYMBOL_MASTER] if on_security_id else [source],
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
        # Every row's provider (issue 22); raw versions from before rows carried one: the partition's lineage.
        delivered, filled = lineage.fill_row_sources(context, source.key, delivered, dataset.date_column)
        numbered = delivered.with_row_index("row_number", offset=1).with_columns(pl.col("row_number").cast(pl.Int64))
        rejects = pl.DataFrame(schema=validation.REJECT_SCHEMA)
        master = None
        checker = validate
        if on_security_id:
            master = lake.read_dataset(datasets.SYMBOL_MASTER.tier, datasets.SYMBOL_MASTER.lake_dataset)
            if validate is not None:
                known = dict(master.select("symbol", "exchange").iter_rows())
                checker = partial(validate, known_symbols=known)
        if checker is not None and numbered.height:
            frame, rejects = _validate_per_source(checker, numbered, dataset.name)
        else:
            frame = numbered.select([c for c in dataset.schema if c != "security_id"]).unique(maintain_order=True)
        if master is not None:  # the symbol's stable id (issue 21)
            frame = universe.with_security_ids(frame, master)
        frame = frame.select(list(dataset.schema)).sort(list(dataset.keys))
        yield from publish.publish(context, dataset, frame, (start, end), lake=lake, warehouse=warehouse,
                                   outcomes=dataset.evaluate(frame), rejects=rejects, metadata=filled)

    return _asset


reference_assets = [_make(d) for d in datasets.REFERENCE.values()]
