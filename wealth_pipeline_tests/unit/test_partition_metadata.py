"""Per-partition metadata of a ranged run: every partition gets its values, in few calls."""

from typing import Any

import dagster as dg
import pytest

from wealth_pipeline.defs.partition_metadata import add_per_partition, add_window_summary

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-31")
ODD = {"2024-01-05": 7, "2024-01-17": 0}  # partitions whose row count differs from the rest (500)


def expected(partition: str) -> dict[str, Any]:
    return {"dagster/row_count": ODD.get(partition, 500), "sources": ["synthetic"] if partition != "2024-01-09" else []}


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def ranged(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    shared = add_per_partition(context, context.asset_key, {p: expected(p) for p in context.partition_keys})
    return dg.MaterializeResult(metadata={**shared, "window": "whole"})


def _plain(value: Any) -> Any:
    return getattr(value, "value", getattr(value, "data", value))


def test_each_partition_gets_its_own_values_and_only_the_odd_ones_cost_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    original = dg.AssetExecutionContext.add_asset_metadata

    def counted(self: dg.AssetExecutionContext, metadata: Any, asset_key: Any = None, partition_key: str | None = None) -> None:
        calls.append(partition_key)
        original(self, metadata, asset_key=asset_key, partition_key=partition_key)

    monkeypatch.setattr(dg.AssetExecutionContext, "add_asset_metadata", counted)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([ranged], instance=instance, tags={
        "dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-30"})
    assert result.success
    events = result.asset_materializations_for_node("ranged")
    assert len(events) == 30
    for event in events:
        got = {name: _plain(event.metadata[name]) for name in ("dagster/row_count", "sources")}
        assert got == expected(event.partition), event.partition
        assert _plain(event.metadata["window"]) == "whole"
    assert sorted(c for c in calls if c) == ["2024-01-05", "2024-01-09", "2024-01-17"]


def test_a_partition_without_values_is_refused() -> None:
    @dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
    def partial(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        add_per_partition(context, context.asset_key, {context.partition_keys[0]: {"n": 1}})
        return dg.MaterializeResult()

    with pytest.raises(ValueError, match="no metadata for partitions"):
        dg.materialize([partial], instance=dg.DagsterInstance.ephemeral(), tags={
            "dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-03"})


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def summarized(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    shared = add_per_partition(context, context.asset_key, {p: expected(p) for p in context.partition_keys})
    n = len(context.partition_keys)
    everywhere = add_window_summary(context, context.asset_key, {"window": f"{n} sessions", "window_rows": 500 * n,
                                                                 "preview": dg.MetadataValue.md("| a |")})
    return dg.MaterializeResult(metadata={**shared, **everywhere})


@pytest.mark.parametrize("end", ["2024-01-01", "2024-01-10"])
def test_the_window_summary_is_on_the_last_partition_and_the_window_on_each(end: str) -> None:
    result = dg.materialize([summarized], instance=dg.DagsterInstance.ephemeral(), tags={
        "dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": end})
    assert result.success
    events = sorted(result.asset_materializations_for_node("summarized"), key=lambda e: e.partition)
    n = len(events)
    assert n == int(end[-2:])
    for event in events:
        assert _plain(event.metadata["window"]) == f"{n} sessions"
        assert _plain(event.metadata["dagster/row_count"]) == expected(event.partition)["dagster/row_count"]
    for event in events[:-1]:
        assert "window_rows" not in event.metadata and "preview" not in event.metadata, event.partition
    assert _plain(events[-1].metadata["window_rows"]) == 500 * n
    assert _plain(events[-1].metadata["preview"]) == "| a |"
