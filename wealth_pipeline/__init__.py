"""wealth_pipeline: a Dagster lakehouse for wealth and market data."""

__version__ = "0.1.0"
