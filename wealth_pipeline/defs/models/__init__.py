"""Models domain: the walk-forward XGBoost model, its daily predictions, and when to retrain."""

import dagster as dg

from wealth_pipeline.defs.models.assets import model, predictions
from wealth_pipeline.defs.models.automation import retrain_sensor, train_model_job, weekly_retrain

defs = dg.Definitions(assets=[model, predictions], jobs=[train_model_job], schedules=[weekly_retrain],
                      sensors=[retrain_sensor])
