"""The dataset registry is what the assets declare, and the publish gate fails once."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from wealth_pipeline.defs import datasets, publish, quality
from wealth_pipeline.defs.datasets import Dataset


@pytest.fixture(scope="module")
def asset_graph() -> dg.AssetGraph:
    from wealth_pipeline.definitions import defs

    return (defs() if callable(defs) else defs).resolve_asset_graph()


def test_every_column_of_every_dataset_has_a_description_and_a_type() -> None:
    for dataset in datasets.REGISTRY.values():
        schema = dataset.column_schema()
        assert [c.name for c in schema.columns] == list(dataset.schema), dataset.name
        assert all(c.description and c.type for c in schema.columns), dataset.name
    adj = next(c for c in datasets.BARS.column_schema().columns if c.name == "adj_close")
    assert adj.type == "double" and "adjusted" in adj.description.lower()


def test_an_undocumented_column_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="'no_such_column' has no description"):
        datasets.describe("no_such_column")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        datasets.get("nope")


def test_published_assets_carry_the_registry_schema_checks_and_table(asset_graph: dg.AssetGraph) -> None:
    published = [datasets.BARS, *datasets.REFERENCE.values(), datasets.INDICATORS, datasets.FACTOR_EXPOSURES,
                 datasets.PREDICTIONS, *datasets.PORTFOLIO.values()]
    for dataset in published:
        node = asset_graph.get(dataset.key)
        assert node.metadata["dagster/column_schema"] == dataset.column_schema(), dataset.name
        assert node.metadata["dagster/table_name"] == dataset.table
        declared = {spec.name for spec in dataset.check_specs()}
        assert declared <= {key.name for key in node.check_keys}, dataset.name
        assert datasets.RECONCILE in declared
    # deps come from the same declarations the reads use
    assert {k.to_user_string() for k in asset_graph.get(dg.AssetKey("bars")).parent_keys} == {
        "raw_bars", "corporate_actions", "symbol_master"}
    assert {k.to_user_string() for k in asset_graph.get(dg.AssetKey("factor_exposures")).parent_keys} == {
        "bars", "factor_returns"}


# ---- the gate -------------------------------------------------------------------------------------------
TOY = Dataset("toy", "processed", "toy.table", "session_date", ("symbol", "session_date"),
              {"symbol": pl.Utf8(), "session_date": pl.Date(), "value": pl.Float64()},
              checks=(quality.Check("value_positive", "value > 0", blocking=False,
                                    predicate=lambda f: (bool((f["value"] > 0).all()), {})),))
DAY = dt.date(2024, 7, 1)
DUPLICATED = pl.DataFrame({"symbol": ["A", "A"], "session_date": [DAY, DAY], "value": [1.0, 2.0]})


def _run(body_error: Exception | None) -> dg.ExecuteInProcessResult:
    @dg.asset(name="toy", check_specs=TOY.check_specs(), retry_policy=dg.RetryPolicy(max_retries=3))
    def toy(context):  # unannotated: Dagster reads the annotation at definition time (a string here)
        if body_error is not None:
            raise body_error
        # lake and warehouse are never reached: the gate stops before anything is written
        yield from publish.publish(context, TOY, DUPLICATED, (DAY, DAY), lake=None, warehouse=None,
                                   outcomes=TOY.evaluate(DUPLICATED))

    return dg.materialize([toy], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def _events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == kind]


def test_a_blocking_check_failure_fails_once_without_retries_and_reports_every_check() -> None:
    result = _run(None)
    assert not result.success
    assert len(_events(result, dg.DagsterEventType.STEP_START)) == 1
    assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    (failure,) = _events(result, dg.DagsterEventType.STEP_FAILURE)
    assert "toy: blocking checks failed" in failure.step_failure_data.user_failure_data.description
    assert "keys_unique" in failure.step_failure_data.user_failure_data.description
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {"schema": True, "keys_unique": False, "value_positive": True, "warehouse_reconciles": False}
    assert result.get_asset_materialization_events() == []


def test_a_transient_error_keeps_its_retries() -> None:
    result = _run(ConnectionError("warehouse went away"))
    assert not result.success
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 3


def test_preview_shows_the_latest_rows_with_the_column_schema() -> None:
    # Only the latest session's rows, even when fewer than ``rows`` (a day some exchanges are closed);
    # NaN shows as an empty cell.
    later = DAY + dt.timedelta(days=1)
    frame = pl.DataFrame({"symbol": ["A", "B", "A", "B"], "session_date": [DAY, DAY, later, later],
                          "value": [1.0, 2.0, 3.0, float("nan")]})
    table = publish.preview(frame, TOY, rows=3)
    assert [r.data for r in table.value.records] == [
        {"symbol": "A", "session_date": "2024-07-02", "value": 3.0}, {"symbol": "B", "session_date": "2024-07-02", "value": None}]
    assert len(publish.preview(frame, TOY, rows=1).value.records) == 1
    assert [(c.name, c.type) for c in table.value.schema.columns] == [("symbol", "text"), ("session_date", "date"), ("value", "double")]


def test_partition_digest_depends_on_rows_not_on_where_they_were_sliced_from() -> None:
    """A day cut from a window read (bitmap at a byte offset) and the same rows read alone."""
    import polars as pl

    from wealth_pipeline.defs.models.store import partition_digest

    window = pl.DataFrame({"x": [None, 1.0, None, 2.0, None, None, 3.0, None] * 8, "s": ["a", None, "bb", "c"] * 16})
    for offset in range(0, 40):
        day = window.slice(offset, 16)
        alone = pl.DataFrame({"x": day["x"].to_list(), "s": day["s"].to_list()})
        assert partition_digest(day) == partition_digest(alone), offset
    assert partition_digest(window.slice(0, 16)) != partition_digest(window.slice(1, 16))


def test_every_table_asset_shows_its_column_schema_raw_and_symbol_master_included() -> None:
    from wealth_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    without = {k.to_user_string() for k in graph.get_all_asset_keys()
               if graph.get(k).is_materializable and "dagster/column_schema" not in graph.get(k).metadata}
    # model: a booster and its manifest, not a table; portfolio_reference: several reference tables at once
    assert without == {"model", "portfolio_reference"}
    for name, dataset in datasets.RAW.items():
        assert graph.get(dg.AssetKey(f"raw_{name}")).metadata["dagster/column_schema"] == dataset.column_schema()
    assert graph.get(dg.AssetKey("symbol_master")).metadata["dagster/column_schema"] == datasets.SYMBOL_MASTER.column_schema()
