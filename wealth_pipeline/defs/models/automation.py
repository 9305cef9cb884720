"""When to retrain: a weekly schedule and a sensor counting sessions landed since the last model.

Both target ``train_model`` (the ``model`` asset) and ship STOPPED: on the demo's state the sensor
would launch a training at once (start them in the UI's Automation page, or with ``dagster sensor
start model_retrain_sensor`` / ``dagster schedule start model_weekly_retrain``). The threshold comes
from the ``model_retrain`` resource (``WEALTH_MODEL_RETRAIN_SESSIONS``). "New sessions" are trading-session partitions materialized for both ``indicators`` and
``factor_exposures`` after the ``data_end`` of the latest ``model`` materialization (every such
partition when no model exists yet).
"""

import datetime as dt

import dagster as dg

from wealth_pipeline.defs.resources import ModelRetrainResource

MODEL_KEY = dg.AssetKey("model")
FEATURE_KEYS = (dg.AssetKey("indicators"), dg.AssetKey("factor_exposures"))
RETRAIN_SESSIONS_ENV = "WEALTH_MODEL_RETRAIN_SESSIONS"
SENSOR_DESCRIPTION = "Requests model training when enough new sessions of features (WEALTH_MODEL_RETRAIN_SESSIONS, default 20) have landed since the last model."

train_model_job = dg.define_asset_job(
    "train_model", selection=dg.AssetSelection.assets(MODEL_KEY),
    description="Train the forward-return model on the latest processed features and register it.",
    tags={"wealth/domain": "models"},
)


def last_model_data_end(instance: dg.DagsterInstance) -> str | None:
    """``data_end`` (YYYY-MM-DD) of the latest ``model`` materialization, or None when there is none."""
    event = instance.get_latest_materialization_event(MODEL_KEY)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("data_end")
    return str(value.value) if value is not None else None


def new_sessions(instance: dg.DagsterInstance) -> list[str]:
    """Sessions materialized for every feature input after the last model's ``data_end``, sorted."""
    landed = set.intersection(*(set(instance.get_materialized_partitions(key)) for key in FEATURE_KEYS))
    data_end = last_model_data_end(instance)
    return sorted(key for key in landed if data_end is None or key > data_end)


def _request(instance: dg.DagsterInstance, threshold: int) -> dg.RunRequest | dg.SkipReason:
    fresh = new_sessions(instance)
    if len(fresh) < threshold:
        return dg.SkipReason(f"{len(fresh)} new session(s) since the last model; retraining at {threshold}")
    return dg.RunRequest(run_key=f"retrain-through-{fresh[-1]}",
                         tags={"wealth/trigger": "new_sessions", "wealth/new_sessions": str(len(fresh))})


def build_retrain_sensor(min_new_sessions: int | None = None, name: str = "model_retrain_sensor") -> dg.SensorDefinition:
    """A sensor requesting ``train_model`` once enough new sessions have landed.

    With ``min_new_sessions`` the threshold is fixed; without it the sensor reads it from the
    ``model_retrain`` resource at each tick. Each request's run key names the newest session, so one
    batch of sessions triggers at most one training.
    """
    if min_new_sessions is not None:
        if min_new_sessions < 1:
            raise ValueError(f"{RETRAIN_SESSIONS_ENV} / min_new_sessions must be >= 1, got {min_new_sessions}")

        @dg.sensor(name=name, job=train_model_job, minimum_interval_seconds=3600,
                   default_status=dg.DefaultSensorStatus.STOPPED,
                   description=f"Requests model training when {min_new_sessions}+ new sessions of features have landed since the last model.")
        def fixed_retrain_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
            return _request(context.instance, min_new_sessions)

        return fixed_retrain_sensor

    @dg.sensor(name=name, job=train_model_job, minimum_interval_seconds=3600,
               default_status=dg.DefaultSensorStatus.STOPPED, description=SENSOR_DESCRIPTION)
    def retrain_sensor(context: dg.SensorEvaluationContext, model_retrain: ModelRetrainResource) -> dg.RunRequest | dg.SkipReason:
        return _request(context.instance, model_retrain.threshold())

    return retrain_sensor


@dg.schedule(name="model_weekly_retrain", job=train_model_job, cron_schedule="0 6 * * 6",
             execution_timezone="America/New_York", default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Saturday 06:00 New York: retrain on the week's sessions (skipped when none landed).")
def weekly_retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    fresh = new_sessions(context.instance)
    if not fresh:
        return dg.SkipReason("no new session since the last model")
    when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    return dg.RunRequest(run_key=f"weekly-{when:%Y-%m-%d}", tags={"wealth/trigger": "weekly"})


retrain_sensor = build_retrain_sensor()
