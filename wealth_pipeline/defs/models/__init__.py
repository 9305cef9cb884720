"""Models domain: the walk-forward XGBoost model, its daily predictions, and when to retrain.

``dg.load_from_defs_folder`` (``wealth_pipeline/definitions.py``) loads the top-level assets,
checks, jobs, schedules and sensors of each module here (assets.py (model, predictions), automation.py (train_model, its schedule and sensor)); nothing to list by hand.
"""
