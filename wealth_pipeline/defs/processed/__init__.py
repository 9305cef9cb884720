"""Processed domain: validated, adjusted market data in the processed tier and `market.*`.

``dg.load_from_defs_folder`` (``wealth_pipeline/definitions.py``) loads the top-level assets,
checks, jobs, schedules and sensors of each module here (bars.py, reference.py); nothing to list by hand.
"""
