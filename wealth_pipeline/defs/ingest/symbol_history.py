"""The symbol master's history and index membership, published with it (issue 21).

``symbol_master`` calls :func:`publish_history` after ``ref.securities`` is loaded: the dated
records derived from the master (``core.universe.securities_history``) go to the processed tier
and ``ref.securities_history``; index membership (the provider's ``index_membership()`` when it has
one: the synthetic market's S&P 500; a vendor's ``landing/index_membership/*.csv``) to
``ref.index_membership``; a vendor's ``landing/identifier_changes/*.csv`` (dated name and ISIN
changes) split the history records at their dates. ``ref.universe_as_of(date, index)`` reads both.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import universe
from wealth_pipeline.defs.datasets import INDEX_MEMBERSHIP, SECURITIES_HISTORY
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.providers.base import MarketDataProvider


def membership_of(provider: MarketDataProvider) -> pl.DataFrame:
    """The provider's index membership intervals, or none when it publishes no membership."""
    source = getattr(provider, "index_membership", None)
    if source is None:
        return pl.DataFrame(schema=universe.INDEX_MEMBERSHIP_SCHEMA)
    return source().select([pl.col(c).cast(t) for c, t in universe.INDEX_MEMBERSHIP_SCHEMA.items()])


def publish_history(
    context: dg.AssetExecutionContext,
    provider: MarketDataProvider,
    master: pl.DataFrame,
    lake: Lakehouse,
    warehouse: WarehouseResource,
) -> dict[str, Any]:
    """Write securities history and index membership to both tiers; metadata for the materialization."""
    try:
        history = universe.securities_history(master)
        changes = getattr(provider, "identifier_changes", None)
        if changes is not None:
            found = changes()
            if found.height:
                history = universe.apply_changes(
                    history,
                    found.select([pl.col(c).cast(t) for c, t in universe.IDENTIFIER_CHANGES_SCHEMA.items()]),
                )
        membership = membership_of(provider)
    except ValueError as exc:  # VendorFileError too: the same input fails the same way, not worth a retry
        raise dg.Failure(str(exc), allow_retries=False) from exc
    unknown = membership.join(history.select("security_id").unique(), on="security_id", how="anti")
    if unknown.height:
        raise dg.Failure(
            f"index membership names security_id {unknown['security_id'][0]} ({unknown.height} row(s)) that the "
            "symbol master does not have: every member must be a security of the master",
            allow_retries=False,
        )
    lake.write_dataset(SECURITIES_HISTORY.tier, SECURITIES_HISTORY.lake_dataset, history)
    lake.write_dataset(INDEX_MEMBERSHIP.tier, INDEX_MEMBERSHIP.lake_dataset, membership)
    run_id = context.run_id
    warehouse.replace_table(SECURITIES_HISTORY.table, history, asset="symbol_master", run_id=run_id)
    warehouse.replace_table(INDEX_MEMBERSHIP.table, membership, asset="symbol_master", run_id=run_id)
    changes = dict(history.group_by("change").len().sort("change").iter_rows())
    return {
        "securities": history["security_id"].n_unique(),
        "history_records": dg.MetadataValue.json(changes),
        "delisted": int(
            history.group_by("security_id")
            .agg(pl.col("valid_to").sort_by("valid_from").last())["valid_to"]
            .is_not_null()
            .sum()
        ),
        "index_membership_rows": membership.height,
    }
