"""Analytics domain: indicators and factor exposures in the processed tier and `analytics.*`.

``dg.load_from_defs_folder`` (``wealth_pipeline/definitions.py``) loads the top-level assets,
checks, jobs, schedules and sensors of each module here (assets.py); nothing to list by hand.
"""
