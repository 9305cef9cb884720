"""Operations: backups and restores with verification, lakehouse manifests, freshness, status.

Pure library code (no Dagster import except in ``status``, which reads the instance); the Dagster
wiring lives in ``wealth_pipeline/defs/operations`` and the commands in ``wealth_pipeline/cli.py``.
"""
