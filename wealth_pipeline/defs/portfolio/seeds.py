"""Where portfolio reference data comes from: the landing zone, else the seeded demo.

``<landing>/portfolio/users.csv``, ``<landing>/portfolio/portfolios.csv`` and every
``<landing>/portfolio/transactions/*.csv`` (layout: ``docs/portfolio-file-layouts.md``). When the
landing zone has no ``portfolio/users.csv`` (or no landing zone is configured) the demo shipped in
``defs/portfolio/demo/`` is used; the asset metadata says which.
"""

from __future__ import annotations

from importlib import resources

import polars as pl

from wealth_pipeline.core import calendars
from wealth_pipeline.core.portfolio_reference import PortfolioReferenceError, ReferenceData, load_reference
from wealth_pipeline.lakehouse.store import ObjectNotFoundError, open_store

PREFIX = "portfolio"
DEMO_SOURCE = "demo (wealth_pipeline/defs/portfolio/demo)"


def demo_files() -> tuple[tuple[str, bytes], tuple[str, bytes], list[tuple[str, bytes]]]:
    folder = resources.files("wealth_pipeline.defs.portfolio") / "demo"
    read = lambda name: (f"demo/{name}", (folder / name).read_bytes())  # noqa: E731
    return read("users.csv"), read("portfolios.csv"), [read("transactions.csv")]


def landing_files(landing_uri: str, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1"):
    """The three kinds of files from the landing zone, or None when it holds no portfolio/users.csv."""
    store = open_store(landing_uri, s3_endpoint_url, s3_region)
    if not store.exists(f"{PREFIX}/users.csv"):
        return None
    try:
        users = (store.uri(f"{PREFIX}/users.csv"), store.get_bytes(f"{PREFIX}/users.csv"))
        portfolios = (store.uri(f"{PREFIX}/portfolios.csv"), store.get_bytes(f"{PREFIX}/portfolios.csv"))
    except ObjectNotFoundError as exc:
        raise PortfolioReferenceError(f"landing zone has {PREFIX}/users.csv but not {PREFIX}/portfolios.csv: {exc}") from exc
    keys = [k for k in store.list_keys(f"{PREFIX}/transactions/") if k.lower().endswith(".csv")]
    return users, portfolios, [(store.uri(k), store.get_bytes(k)) for k in keys]


def read_reference(securities: pl.DataFrame, landing_uri: str | None, s3_endpoint_url: str | None = None,
                   s3_region: str = "us-east-1") -> ReferenceData:
    """Validated users, portfolios and transactions (landing zone first, demo otherwise)."""
    found = landing_files(landing_uri, s3_endpoint_url, s3_region) if landing_uri else None
    source = f"landing zone {landing_uri}" if found else DEMO_SOURCE
    users, portfolios, transactions = found or demo_files()
    return load_reference(users, portfolios, transactions, securities, calendars.is_session, source=source)
