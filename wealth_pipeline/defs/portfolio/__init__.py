"""Portfolio domain: reference data and daily accounting, metrics and attribution in `portfolio.*`.

``dg.load_from_defs_folder`` (``wealth_pipeline/definitions.py``) loads the top-level assets,
checks, jobs, schedules and sensors of each module here (assets.py); nothing to list by hand.
"""
