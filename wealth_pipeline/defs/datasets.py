"""The dataset registry: every published dataset declared once.

A ``Dataset`` names the asset, its lakehouse tier, its warehouse table, the date column its
partitions follow, its keys, its schema and the checks its frame must pass. Assets take their
``deps``, reads, check specs and column schema from here, and the publish step
(``defs/publish.py``) takes everything it needs to gate, write, load and reconcile. Adding a
dataset is one entry below plus the asset that computes it.

Column descriptions come from the dbt doc blocks (``dbt_project/models/docs.md``: one text per
column for the warehouse, the marts and Dagster alike), completed by ``COLUMN_DOCS`` for the
columns no mart exposes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import analytics, portfolio_daily, quality_jumps, schemas, universe
from wealth_pipeline.core import bars as bar_compute
from wealth_pipeline.defs import quality
from wealth_pipeline.lakehouse.store import Lakehouse

DOCS_FILE = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "docs.md"
RECONCILE = "warehouse_reconciles"

# Columns without a dbt doc block (the dbt blocks win where both exist).
COLUMN_DOCS: dict[str, str] = {
    "name": "Name of the security.",
    "is_synthetic": "True for securities of the offline synthetic market (demo and tests).",
    # symbol master identity and history (issue 21; README "Symbol master")
    "isin": "ISO 6166 ISIN (check digit verified).",
    "cusip": "CUSIP (from a US/CA ISIN or the vendor; check digit verified).",
    "figi": "OpenFIGI identifier where a source provides it (check digit verified).",
    "mic": "ISO 10383 market identifier code of the listing exchange (XNYS, XNAS, XTSE).",
    "country": "Domicile, ISO 3166 alpha-2 (the ISIN's prefix where no source gives it).",
    "security_type": "STOCK, ETF, ...",
    "industry": "Industry of the issuer (source's classification).",
    "dividend_currency": "ISO 4217 code dividends are paid in.",
    "valid_from": "First date the row applies (listing, ticker change, index join).",
    "valid_to": "First date it no longer applies (delisting, ticker change, index exit); null while current.",
    "change": "What opened this interval: listing, ticker_change, name_change, identifier_change.",
    "index_name": "Index the membership row belongs to (e.g. S&P 500).",
    "source": "Provider that delivered the row: its rights-registry key (synthetic, the landing-zone vendor its file's path names, the HTTP adapter); `unknown` when no single provider is on record.",
    "ex_date": "Ex-date of the corporate action: the first session that trades without it.",
    "action_type": "`split` (ratio = new shares per old share) or `dividend` (amount = cash per share).",
    "distribution_type": "Which distribution of the ex-date: regular, special, supplemental, capital_gain, return_of_capital (dividends; several may share a day) or split.",
    "ratio": "Split ratio: new shares per old share (4.0 for a 4-for-1); null for dividends.",
    "amount": "Cash amount (per share for dividends, per transaction for portfolio rows) in `currency`.",
    "quote_currency": "ISO 4217 code of the quote currency.",
    "rate": "Units of quote currency per unit of base currency (USD/CAD 1.35: 1 USD = 1.35 CAD).",
    "factor": "Factor name: market (excess over rf), size, value, momentum, or rf (daily risk-free rate).",
    "value": "Daily simple return of the factor (rf: the daily risk-free rate).",
    "level": "Benchmark index level at the close.",
    "return": "Simple return of the benchmark from the previous session's level.",
    "rank": "Rank of the score within the session, 1 = highest.",
    "quantity": "Shares held at the close (split-adjusted).",
    "cost_basis_local": "Cost of the open FIFO lots in the listing currency.",
    "cost_basis_base": "Cost of the open FIFO lots in base currency at the purchase-day FX rates.",
    "market_value_local": "Quantity times the close, in the listing currency.",
    "market_value_base": "Market value in base currency at the day's FX rate (last rate carried over FX holidays).",
    "unrealized_pnl_base": "Market value minus cost basis, in base currency.",
    "realized_pnl_base": "Profit realized by sales so far (FIFO), in base currency.",
    "weight": "Share of the portfolio's total value in base currency.",
    "balance": "Cash balance in `currency`.",
    "balance_base": "Cash balance in base currency at the day's FX rate.",
    "local_return": "Return of the position in its listing currency.",
    "fx_return": "Return of the listing currency against the base currency.",
    "interaction": "Interaction term: local return times FX return.",
    "base_return": "Return in base currency: local + fx + interaction.",
    "coverage": "Share of the invested value whose securities have factor estimates that day.",
}


@cache
def _dbt_docs() -> dict[str, str]:
    text = DOCS_FILE.read_text(encoding="utf-8")
    blocks = re.findall(r"{%\s*docs\s+(\w+)\s*%}(.*?){%\s*enddocs\s*%}", text, re.S)
    return {name: " ".join(body.split()) for name, body in blocks}


def describe(column: str) -> str:
    """The one description of ``column``; raises ``KeyError`` naming it when none is written."""
    docs = _dbt_docs()
    if column in docs:
        return docs[column]
    if f"attribution_{column}" in docs:
        return docs[f"attribution_{column}"]
    if column in COLUMN_DOCS:
        return COLUMN_DOCS[column]
    raise KeyError(f"column {column!r} has no description: add a dbt doc block to {DOCS_FILE} or an entry to COLUMN_DOCS")


def _type_name(dtype: pl.DataType) -> str:
    return {"String": "text", "Date": "date", "Float64": "double", "Int64": "bigint", "Int32": "integer",
            "Boolean": "boolean"}.get(str(dtype), str(dtype).lower())


@dataclass(frozen=True)
class Dataset:
    """One dataset as the assets, the publish step and the UI see it.

    ``tier``: lakehouse tier of its partitions (``None``: warehouse only, e.g. portfolio rows, which
    have no per-owner access control in the lake). ``table``: warehouse table (``None``: lake only).
    ``checks``: frame checks beyond ``schema`` and ``keys_unique``; ``computed``: checks the asset
    works out from more than the frame, as ``(name, description, blocking)``. ``entity``: the column
    whose values a load may be restricted to (the warehouse keeps rows of other entities).
    ``lake_name``: the lakehouse folder when it differs from the asset name.
    """

    name: str
    tier: str | None
    table: str | None
    date_column: str | None
    keys: tuple[str, ...]
    schema: dict[str, pl.DataType]
    checks: tuple[quality.Check, ...] = ()
    computed: tuple[tuple[str, str, bool], ...] = ()
    schema_check: bool = True
    entity: str | None = None
    lake_name: str | None = None

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(self.name)

    @property
    def lake_dataset(self) -> str:
        """Its folder in the lakehouse tier (the asset name unless told otherwise: raw_bars is raw/bars)."""
        return self.lake_name or self.name

    def frame_checks(self) -> list[quality.Check]:
        """The checks evaluated on the frame before anything is written."""
        standard = [quality.Check("keys_unique", f"One row per {', '.join(self.keys)}.",
                                  predicate=quality.unique_keys(self.keys))]
        if self.schema_check:
            standard.insert(0, quality.Check("schema", f"{self.name} has the documented columns and types.",
                                             predicate=quality.has_columns(self.schema)))
        return [*standard, *self.checks]

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        specs = [c.spec(self.key) for c in self.frame_checks()]
        specs += [dg.AssetCheckSpec(name, asset=self.key, description=description, blocking=blocking)
                  for name, description, blocking in self.computed]
        if self.table:
            specs.append(dg.AssetCheckSpec(RECONCILE, asset=self.key,
                                           description=f"{self.table} holds exactly the rows published for the window."))
        return specs

    def evaluate(self, frame: pl.DataFrame) -> list[quality.CheckOutcome]:
        return quality.evaluate(frame, self.frame_checks(), self.name)

    def outcome(self, name: str, passed: bool, details: dict[str, Any]) -> quality.CheckOutcome:
        """The outcome of one of the ``computed`` checks."""
        description, blocking = next((d, b) for n, d, b in self.computed if n == name)
        return quality.CheckOutcome(name, passed, blocking, description, details)

    def column_schema(self, columns: list[str] | None = None) -> dg.TableSchema:
        names = columns or list(self.schema)
        return dg.TableSchema(columns=[
            dg.TableColumn(name, type=_type_name(self.schema[name]), description=describe(name),
                           constraints=dg.TableColumnConstraints(nullable=name not in self.keys))
            for name in names])

    def definition_metadata(self) -> dict[str, Any]:
        """What the asset definition carries: column schema, warehouse table, partition column."""
        metadata: dict[str, Any] = {"dagster/column_schema": self.column_schema()}
        if self.date_column:
            metadata["partition_column"] = self.date_column
        if self.table:
            metadata["dagster/table_name"] = self.table
        return metadata

    def read(self, lake: Lakehouse, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
        """The lakehouse partitions of ``[start, end]`` as one frame (no rows: no columns)."""
        if self.tier is None:
            raise ValueError(f"{self.name} has no lakehouse copy (warehouse only); read it from {self.table}")
        return lake.read_partitions(self.tier, self.lake_dataset, start, end)


def _gx(build: Callable[[Any], list[Any]]) -> Callable[[], list[Any]]:
    """A GX suite factory: great_expectations (slow to import) loads when a check first runs."""
    def factory() -> list[Any]:
        import great_expectations as gx

        return build(gx.expectations)

    return factory


_SESSION = ("symbol", "session_date")


def security_id_known(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Every row carries the stable id of its symbol (issue 21: the facts join on security_id)."""
    if "security_id" not in frame.columns:
        return False, {"rows_without_security_id": frame.height, "reason": "no security_id column"}
    date = next((c for c in ("session_date", "ex_date") if c in frame.columns), None)
    missing = frame.filter(pl.col("security_id").is_null())
    named = missing.select("symbol", date) if date else missing.select("symbol", pl.lit("").alias("_"))
    return missing.is_empty(), {"rows_without_security_id": missing.height, "examples": [
        f"{s} {d}".strip() for s, d in named.head(5).rows()]}


SECURITY_ID_KNOWN = quality.Check(
    "security_id_known", "Every row carries its bar's stable security_id (ref.securities; processed bars written "
    "before the symbol master have none: re-materialize bars for the window).", predicate=security_id_known)
# The same for rows keyed by symbol and ex-date: the id is the symbol master's for the row's symbol.
ACTION_SECURITY_ID_KNOWN = quality.Check(
    "security_id_known", "Every row carries its symbol's stable security_id from the symbol master (ref.securities; "
    "symbols it does not know are rejected before this).", predicate=security_id_known)
# What the bars asset reports for the factor rows it writes next to its window (they have no asset).
FACTORS_SECURITY_ID_KNOWN = "adjustment_factors_security_id_known"

# ---- ingest (declared here for deps and column schemas; written by defs/ingest) ---------------------
SYMBOL_MASTER = Dataset("symbol_master", "processed", "ref.securities", None, ("symbol",), schemas.SYMBOL_MASTER_SCHEMA)
# Written by the symbol_master asset with it (defs/ingest/symbol_history.py; issue 21), so not assets of their own.
SECURITIES_HISTORY = Dataset("securities_history", "processed", "ref.securities_history", None,
                             ("security_id", "valid_from"), universe.SECURITIES_HISTORY_SCHEMA)
INDEX_MEMBERSHIP = Dataset("index_membership", "processed", "ref.index_membership", None,
                           ("index_name", "security_id", "valid_from"), universe.INDEX_MEMBERSHIP_SCHEMA)
RAW = {
    name: Dataset(f"raw_{name}", "raw", None, date_column, keys, schema, lake_name=name)
    for name, schema, date_column, keys in (
        ("bars", schemas.with_source(schemas.BARS_SCHEMA), "session_date", _SESSION),
        ("corporate_actions", schemas.with_source(schemas.CORPORATE_ACTIONS_SCHEMA), "ex_date", ("symbol", "ex_date", "action_type", "distribution_type")),
        ("fx_rates", schemas.with_source(schemas.FX_RATES_SCHEMA), "session_date", ("base_currency", "quote_currency", "session_date")),
        ("factor_returns", schemas.with_source(schemas.FACTOR_RETURNS_SCHEMA), "session_date", ("factor", "session_date")),
        ("benchmark_returns", schemas.with_source(schemas.BENCHMARK_RETURNS_SCHEMA), "session_date", ("benchmark", "session_date")),
    )
}

# ---- processed ---------------------------------------------------------------------------------------
BARS = Dataset(
    "bars", "processed", "market.bars_daily", "session_date", _SESSION, schemas.PROCESSED_BARS_SCHEMA,
    checks=(
        quality.Check("ohlcv_valid", "Prices > 0, high >= max(open, close), low <= min(open, close), volume >= 0, no nulls (GX suite).",
                      expectations=_gx(lambda e: [
                          *[e.ExpectColumnValuesToNotBeNull(column=c) for c in ("symbol", "session_date", "open", "high", "low", "close", "adj_close")],
                          *[e.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in ("open", "high", "low", "close", "adj_close")],
                          e.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
                          e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="open", or_equal=True),
                          e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="close", or_equal=True),
                          e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="open", column_B="low", or_equal=True),
                          e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close", column_B="low", or_equal=True),
                      ])),
        quality.Check("no_unexplained_jumps", f"No adjusted move above {bar_compute.JUMP_THRESHOLD:.0%} that looks like a bad tick or an unreported split "
                      "(judged against the day's market, the next session, split ratios and volume; core/quality_jumps.py).",
                      blocking=False, predicate=partial(quality_jumps.no_unexplained_jumps, threshold=bar_compute.JUMP_THRESHOLD)),
    ),
    computed=(("complete_against_universe", "Every listing has a bar on every session of its exchange.", False),
              (FACTORS_SECURITY_ID_KNOWN, "Every adjustment factor row written with the window "
               "(market.adjustment_factors) carries its symbol's stable security_id.", True)),
)

# Written by ``bars`` next to its window (one row per symbol and ex-date; not an asset of its own):
# the lakehouse copy carries the cumulative factors into the next window, the warehouse table is
# versioned (known_at / superseded_at, warehouse/adjustments.py) for as-of reads.
# Each row carries its symbol's security_id (issue 21; the bars asset's blocking
# adjustment_factors_security_id_known check).
ADJUSTMENT_FACTORS = Dataset("adjustment_factors", "processed", "market.adjustment_factors", "ex_date", ("symbol", "ex_date"),
                             schemas.PROCESSED_ADJUSTMENT_FACTORS_SCHEMA)

REFERENCE = {
    d.name: d for d in (
        Dataset("corporate_actions", "processed", "market.corporate_actions", "ex_date", ("symbol", "ex_date", "action_type", "distribution_type"),
                schemas.PROCESSED_CORPORATE_ACTIONS_SCHEMA, checks=(quality.Check(
                    "values_in_range", "Not-null and range expectations (Great Expectations suite).", expectations=_gx(lambda e: [
                        e.ExpectColumnValuesToBeInSet(column="action_type", value_set=["split", "dividend"]),
                        e.ExpectColumnValuesToBeInSet(column="distribution_type",
                                                      value_set=sorted({k for v in schemas.DISTRIBUTION_TYPES.values() for k in v})),
                        e.ExpectColumnValuesToNotBeNull(column="symbol")])), ACTION_SECURITY_ID_KNOWN)),
        Dataset("fx_rates", "processed", "market.fx_rates", "session_date", ("base_currency", "quote_currency", "session_date"),
                schemas.with_source(schemas.FX_RATES_SCHEMA), checks=(quality.Check(
                    "values_in_range", "Not-null and range expectations (Great Expectations suite).", expectations=_gx(lambda e: [
                        e.ExpectColumnValuesToBeBetween(column="rate", min_value=0, strict_min=True),
                        e.ExpectColumnValuesToNotBeNull(column="rate")])),)),
        Dataset("factor_returns", "processed", "market.factor_returns", "session_date", ("factor", "session_date"),
                schemas.with_source(schemas.FACTOR_RETURNS_SCHEMA), checks=(quality.Check(
                    "values_in_range", "Not-null and range expectations (Great Expectations suite).", expectations=_gx(lambda e: [
                        e.ExpectColumnValuesToBeInSet(column="factor", value_set=[*schemas.FACTORS, schemas.RISK_FREE_FACTOR]),
                        e.ExpectColumnValuesToBeBetween(column="value", min_value=-0.5, max_value=0.5),
                        e.ExpectColumnValuesToNotBeNull(column="value")])),)),
        Dataset("benchmark_returns", "processed", "market.benchmark_returns", "session_date", ("benchmark", "session_date"),
                schemas.with_source(schemas.BENCHMARK_RETURNS_SCHEMA), checks=(quality.Check(
                    "values_in_range", "Not-null and range expectations (Great Expectations suite).", expectations=_gx(lambda e: [
                        e.ExpectColumnValuesToBeBetween(column="level", min_value=0, strict_min=True),
                        e.ExpectColumnValuesToBeBetween(column="return", min_value=-0.5, max_value=0.5)])),)),
    )
}

# ---- analytics ---------------------------------------------------------------------------------------
INDICATORS = Dataset(
    "indicators", "processed", "analytics.indicators_daily", "session_date", _SESSION, analytics.INDICATOR_SCHEMA,
    checks=(quality.Check("values_in_range", "RSI and stochastic in [0, 100], Bollinger bands ordered, ATR and volatility >= 0.",
                          predicate=analytics.indicator_ranges), SECURITY_ID_KNOWN),
    computed=(("complete_after_warmup", "Every bar has an indicator row, with no missing value once "
               f"{analytics.WARM_AFTER_SESSIONS} sessions are observed.", True),),
)
FACTOR_EXPOSURES = Dataset(
    "factor_exposures", "processed", "analytics.factor_exposures", "session_date", _SESSION, analytics.EXPOSURE_SCHEMA,
    checks=(quality.Check("values_in_range", f"R² in [0, 1], residual vol >= 0, n_obs <= {analytics.EXPOSURE_WINDOW}, "
                          f"estimates only with >= {analytics.EXPOSURE_MIN_OBS} observations.", predicate=analytics.exposure_ranges),
            SECURITY_ID_KNOWN),
    computed=(("complete_once_window_filled", f"Every security with {analytics.EXPOSURE_MIN_OBS}+ observations has "
               "estimates on every factor session.", False),),
)

# ---- models ------------------------------------------------------------------------------------------
PREDICTIONS = Dataset(
    "predictions", "models", "models.predictions", "session_date", _SESSION, schemas.PREDICTION_SCHEMA,
    checks=(SECURITY_ID_KNOWN,),
    computed=(("covers_universe", "Every security with a bar on a session that has a model gets a score; ranks 1..N.", True),),
)

# ---- portfolio (warehouse only, row-level-secured) ---------------------------------------------------
_PORTFOLIO = (
    ("portfolio_positions", "portfolio.positions", ("portfolio_id", "symbol", "session_date"),
     ("holdings_not_negative", "No negative quantity unless the portfolio allows short selling.", True)),
    ("portfolio_cash_balances", "portfolio.cash_balances", ("portfolio_id", "currency", "session_date"),
     ("cash_reconciles", "Cash per currency equals the running sum of transactions and dividends.", True)),
    ("portfolio_valuations", "portfolio.valuations", ("portfolio_id", "session_date"),
     ("valuation_equals_sum_of_positions", "Total value = positions + cash in base currency.", True)),
    ("portfolio_metrics", "portfolio.portfolio_metrics", ("portfolio_id", "session_date"),
     ("metrics_in_sane_bounds", "Returns > -100%, volatility in [0, 5], drawdown in [-1, 0], |beta| < 10, |Sharpe| < 20.", True),
     ("all_portfolios_computed", "Every portfolio computed (a bad input row skips its portfolio; errors in metadata).", False)),
    ("currency_attribution", "portfolio.currency_attribution", ("portfolio_id", "symbol", "session_date"),
     ("terms_sum_to_total", "local + fx + interaction = base return for every row.", True)),
    ("portfolio_factor_exposures", "portfolio.factor_exposures", ("portfolio_id", "session_date"),
     ("coverage_in_range", "Coverage in [0, 1].", True)),
)
PORTFOLIO = {
    name: Dataset(name, None, table, "session_date", keys, portfolio_daily.SCHEMAS[name], computed=tuple(computed),
                  schema_check=False, entity="portfolio_id")
    for name, table, keys, *computed in _PORTFOLIO
}

REGISTRY: dict[str, Dataset] = {
    d.name: d for d in (SYMBOL_MASTER, *RAW.values(), BARS, *REFERENCE.values(), INDICATORS, FACTOR_EXPOSURES,
                        PREDICTIONS, *PORTFOLIO.values())
}


def get(name: str) -> Dataset:
    """The dataset called ``name``; raises ``KeyError`` naming the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}: expected one of {sorted(REGISTRY)}") from None


def keys(*datasets: Dataset) -> list[dg.AssetKey]:
    """Asset keys for ``deps=``: the same declaration the reads use."""
    return [d.key for d in datasets]


# ---- warm-up: the earlier partitions each dataset reads (declared to Dagster as partition mappings) --
def _warmup() -> dict[str, dict[str, int]]:
    """downstream asset -> upstream asset -> weekday partitions read before the window.

    Derived from the lookback constants the computations read with, so a backfill in chunks
    (``WEALTH_BACKFILL_CHUNK_SESSIONS``) runs a chunk only after the partitions its warm-up reads:
    the daemon waits for them instead of a later chunk reading history an earlier one has not
    written. An upstream not listed is declared for the window only (identity), also where more is
    read: history since the first partition (every corporate action before ``bars``' window, the
    portfolio accounting since inception) has no Dagster mapping but ``AllPartitionMapping``, and
    with it a backfill of a range targets every partition of the child (Dagster's asset backfill
    takes the target as the roots' range and everything downstream of it through the mappings;
    seen: 1,023 ``bars`` partitions for a 43-session backfill). Those reads are ordered anyway: the
    reference data are materialized in the runs that hold the raw bars, which ``bars`` waits for.
    """
    from wealth_pipeline.core import features, indicators
    from wealth_pipeline.defs import partitions as p

    exposures = p.partitions_for_sessions(analytics.EXPOSURE_WINDOW + 1)
    return {
        # raw history for the close before an ex-date and a spike's neighbours
        BARS.name: {RAW["bars"].name: p.partitions_for_days(bar_compute.LOOKBACK_DAYS)},
        INDICATORS.name: {BARS.name: p.partitions_for_sessions(indicators.WARMUP_SESSIONS),
                          # OBV continues from the stored value of the session before the window
                          INDICATORS.name: p.partitions_for_days(OBV_ANCHOR_DAYS)},
        FACTOR_EXPOSURES.name: {BARS.name: exposures, "factor_returns": exposures},
        PREDICTIONS.name: {BARS.name: p.partitions_for_days(features.RETURN_HISTORY_DAYS)},
    }


# Calendar days of stored indicators the OBV anchor is looked for in before a window.
OBV_ANCHOR_DAYS = 14


@cache
def warmup() -> dict[str, dict[str, int]]:
    """The warm-up table (``_warmup``), computed once."""
    return _warmup()


def asset_deps(downstream: str, declared: list[Dataset | str | dg.AssetKey]) -> list[dg.AssetDep]:
    """``deps=`` of ``downstream``: each declared upstream, with its warm-up partition mapping, plus a
    dependency on itself when the asset reads its own earlier partitions."""
    from wealth_pipeline.defs.partitions import warmup_mapping

    table = warmup().get(downstream, {})
    out: list[dg.AssetDep] = []
    for item in declared:
        key = item.key if isinstance(item, Dataset) else dg.AssetKey(item) if isinstance(item, str) else item
        name = key.to_user_string()
        out.append(dg.AssetDep(key, partition_mapping=warmup_mapping(table[name])) if name in table else dg.AssetDep(key))
    if downstream in table:
        out.append(dg.AssetDep(downstream, partition_mapping=warmup_mapping(table[downstream], self_dependency=True)))
    return out
