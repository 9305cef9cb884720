"""Retrain schedule and sensor against a real (persistent, temporary) Dagster instance with materializations."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from wealth_pipeline.core import features
from wealth_pipeline.definitions import defs
from wealth_pipeline.defs.models import assets as model_assets
from wealth_pipeline.defs.models import automation
from wealth_pipeline.defs.resources import ModelRetrainResource

pytestmark = pytest.mark.integration

JANUARY = [f"2024-01-{d:02d}" for d in range(1, 32) if dt.date(2024, 1, d).weekday() < 5]  # 23 weekdays


def _land(instance: dg.DagsterInstance, sessions: list[str], keys: tuple[str, ...] = ("indicators", "factor_exposures")) -> None:
    for session in sessions:
        for key in keys:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=session))


def _model_trained_through(instance: dg.DagsterInstance, data_end: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="model", metadata={"data_end": data_end, "model_id": "m"}))


def _schedule(instance: dg.DagsterInstance) -> dg.RunRequest | dg.SkipReason:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2024, 2, 3, 11, tzinfo=dt.UTC))
    return automation.weekly_retrain(context)


def test_sensor_requests_training_once_enough_new_sessions_have_landed() -> None:
    with dg.instance_for_test() as instance:
        sensor = automation.build_retrain_sensor(min_new_sessions=10)
        assert isinstance(sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)
        _land(instance, JANUARY[:15])
        _land(instance, JANUARY[15:], keys=("indicators",))  # exposures not there yet: not a new session
        first = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(first, dg.RunRequest) and first.run_key == f"retrain-through-{JANUARY[14]}"
        assert first.tags["wealth/new_sessions"] == "15"
        _model_trained_through(instance, JANUARY[14])
        _land(instance, JANUARY[15:], keys=("factor_exposures",))  # 8 more sessions: below the threshold
        skipped = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(skipped, dg.SkipReason) and "8 new session(s)" in skipped.skip_message
        _land(instance, ["2024-02-01", "2024-02-02"])
        again = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(again, dg.RunRequest) and again.run_key == "retrain-through-2024-02-02"
        assert automation.new_sessions(instance) == [*JANUARY[15:], "2024-02-01", "2024-02-02"]


def test_sensor_threshold_is_configurable_and_validated() -> None:
    # The code location's sensor takes its threshold from the model_retrain resource (WEALTH_MODEL_RETRAIN_SESSIONS).
    sensor = defs.resolve_sensor_def("model_retrain_sensor")
    with dg.instance_for_test() as instance:
        _land(instance, JANUARY[:3])
        def tick(threshold: int) -> dg.RunRequest | dg.SkipReason:
            context = dg.build_sensor_context(instance=instance, resources={"model_retrain": ModelRetrainResource(min_new_sessions=threshold)})
            return sensor(context)
        assert isinstance(tick(3), dg.RunRequest)
        assert isinstance(tick(4), dg.SkipReason) and "retraining at 4" in tick(4).skip_message
        with pytest.raises(dg.Failure, match="WEALTH_MODEL_RETRAIN_SESSIONS=0: expected a whole number >= 1") as failure:
            tick(0)
        assert failure.value.allow_retries is False
        assert isinstance(automation.build_retrain_sensor(4)(dg.build_sensor_context(instance=instance)), dg.SkipReason)
    with pytest.raises(ValueError, match="must be >= 1"):
        automation.build_retrain_sensor(0)


def test_weekly_schedule_retrains_only_when_sessions_landed_since_the_last_model() -> None:
    with dg.instance_for_test() as instance:
        assert isinstance(_schedule(instance), dg.SkipReason)
        _land(instance, JANUARY)
        request = _schedule(instance)
        assert isinstance(request, dg.RunRequest) and request.run_key == "weekly-2024-02-03"
        _model_trained_through(instance, JANUARY[-1])
        assert isinstance(_schedule(instance), dg.SkipReason)
    assert automation.weekly_retrain.cron_schedule == "0 6 * * 6"


def test_domain_definitions_expose_assets_job_schedule_and_sensor() -> None:
    job = defs.resolve_job_def("train_model")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"model"}
    assert automation.weekly_retrain.job_name == "train_model"
    schedule, sensor = defs.resolve_schedule_def("model_weekly_retrain"), defs.resolve_sensor_def("model_retrain_sensor")
    assert schedule.job_name == sensor.job_name == "train_model"
    # Both ship STOPPED: on the demo's state the sensor would launch a training at once.
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "models"} == {"model", "predictions"}


def test_training_set_check_flags_nan_labels_and_duplicate_keys() -> None:
    day = dt.date(2024, 1, 2)
    frame = pl.DataFrame({"symbol": ["A", "B", "C"], "session_date": [day] * 3, "fwd_return": [0.01, float("nan"), 0.02],
                          "label_end": [day + dt.timedelta(days=7)] * 3, "label_available": [True] * 3,
                          "target": [1.0, None, -1.0]})
    outcome = model_assets.training_set_outcome(frame, day + dt.timedelta(days=30))
    assert not outcome.passed and outcome.metadata["nan_labels_inside_window"] == 1
    assert outcome.metadata["examples"] == ["B 2024-01-02"]
    clean = frame.with_columns(pl.col("fwd_return").fill_nan(0.0))
    assert model_assets.training_set_outcome(clean, day + dt.timedelta(days=30)).passed
    dupes = model_assets.training_set_outcome(pl.concat([clean, clean.head(1)]), day + dt.timedelta(days=30))
    assert not dupes.passed and dupes.metadata["duplicate_keys"] == 1
    # Labels ending after the window's last session are not "inside the window".
    assert model_assets.training_set_outcome(frame, day + dt.timedelta(days=3)).passed
    assert features.KEY_COLUMNS == ("symbol", "session_date")
