"""Portfolio domain: reference data and daily accounting, metrics and attribution in `portfolio.*`.

``dg.load_from_defs_folder`` (``wealth_pipeline/definitions.py``) loads the top-level assets,
checks, jobs, schedules and sensors of each module here (assets.py); nothing to list by hand.
"""


def __getattr__(name: str):
    """``<domain>.defs``: this domain's definitions alone (``definitions.domain_definitions``).

    Resolved on access, not a module attribute, so the defs-folder loader does not load them twice.
    """
    if name == "defs":
        from wealth_pipeline.definitions import domain_definitions

        return domain_definitions(__name__.rsplit(".", 1)[-1])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
