"""Ingest: what the provider delivered, kept as immutable content-hashed versions in the raw tier."""


import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from wealth_pipeline.core import calendars, identifiers, universe
from wealth_pipeline.core.schemas import with_source
from wealth_pipeline.defs import datasets, lineage, publish, quality
from wealth_pipeline.defs.ingest.symbol_history import publish_history
from wealth_pipeline.defs.partition_metadata import add_per_partition, add_window_summary
from wealth_pipeline.defs.partitions import closed_days, partition_window, single_run, trading_sessions
from wealth_pipeline.defs.resources import MarketDataResource, WarehouseResource
from wealth_pipeline.lakehouse import raw
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.lakehouse.store import Lakehouse, ObjectStore
from wealth_pipeline.providers import base
from wealth_pipeline.providers.base import MarketDataProvider
from wealth_pipeline.providers.http import CircuitOpenError, request_counts
from wealth_pipeline.providers.http_adapters import HttpMarketData, ProviderConfigError
from wealth_pipeline.providers.landing import VendorFileProvider
from wealth_pipeline.providers.vendor_files import VendorFileError
from wealth_pipeline.rights import lineage as row_sources

OWNERS = ["team:market-data"]


@dataclass(frozen=True)
class RawDataset:
    """One raw dataset: what it stores and which column routes its rows to partitions.

    ``schema``: the provider's delivery columns plus ``source``, the provider of each row (issue 22),
    as ``rights.lineage.delivered`` fetches them.
    """

    name: str
    schema: dict[str, pl.DataType]
    date_column: str
    keys: tuple[str, ...]
    description: str


RAW_DATASETS: tuple[RawDataset, ...] = (
    RawDataset("bars", with_source(base.BARS_SCHEMA), "session_date", ("symbol", "session_date"),
               "Daily OHLCV bars exactly as the provider delivered them."),
    RawDataset("corporate_actions", with_source(base.CORPORATE_ACTIONS_SCHEMA), "ex_date",
               ("symbol", "ex_date", "action_type", "distribution_type"), "Splits and cash dividends, partitioned by ex-date."),
    RawDataset("fx_rates", with_source(base.FX_RATES_SCHEMA), "session_date", ("base_currency", "quote_currency", "session_date"),
               "Daily FX rates (units of quote currency per base currency)."),
    RawDataset("factor_returns", with_source(base.FACTOR_RETURNS_SCHEMA), "session_date", ("factor", "session_date"),
               "Daily factor returns (market excess, size, value, momentum) and the risk-free rate."),
    RawDataset("benchmark_returns", with_source(base.BENCHMARK_RETURNS_SCHEMA), "session_date", ("benchmark", "session_date"),
               "Benchmark index levels and daily returns."),
)


def _raw_checks(dataset: RawDataset) -> list[quality.Check]:
    return [
        quality.Check("schema", f"raw_{dataset.name} has the documented columns and types.",
                      predicate=quality.has_columns(dataset.schema)),
    ]


WINDOW_CHECK = "rows_inside_window"
DELIVERY_CHECK = "vendor_deliveries_clean"
HTTP_COMPLETE_CHECK = "http_fetch_complete"
VENDOR_DATASETS = ("bars", "corporate_actions", "fx_rates")


def get_provider(market_data: MarketDataResource) -> MarketDataProvider:
    """The configured provider; a configuration error fails the step once, without retries."""
    try:
        return market_data.get()
    except ProviderConfigError as exc:
        raise dg.Failure(description=f"configuration error: {exc}", allow_retries=False) from None


def _requests_since(before: dict[str, int]) -> dict[str, int]:
    """HTTP requests sent per vendor since ``before`` (this process; steps of a run run in turn)."""
    now = request_counts()
    return {name: count - before.get(name, 0) for name, count in sorted(now.items()) if count - before.get(name, 0)}


def _fetch_http_bars(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, provider: HttpMarketData,
    store: ObjectStore, start: dt.date, end: dt.date,
) -> tuple[pl.DataFrame, quality.CheckOutcome, dict[str, Any]]:
    """raw_bars from an HTTP vendor: only what the raw tier lacks, kept as soon as validated.

    Policy for symbols that still fail (``market_data.http_incomplete_policy``): ``fail`` raises
    (a step retry then asks only for them), ``complete_others`` returns the rest with a failing
    blocking completeness check. An open circuit fails at once, without step retries.
    """
    from wealth_pipeline.defs.ingest.http_fetch import fetch_bars

    try:
        report = fetch_bars(provider.bars_adapter, store, start, end,
                            deadline_seconds=market_data.http_fetch_deadline_seconds)
    except ProviderConfigError as exc:
        raise dg.Failure(description=f"configuration error: {exc}", allow_retries=False) from None
    summary = report.metadata()
    context.log.info(f"raw_bars over HTTP: {summary}")
    metadata = {"http_fetch": dg.MetadataValue.json(summary)}
    if report.circuit_open:
        raise dg.Failure(
            description=f"raw_bars: {report.stop_error}. {len(report.fetched)} symbol(s) fetched this attempt are "
            f"kept in the raw tier; {len(report.not_attempted)} not attempted. Nothing was written to the "
            "partitions (the previous state is kept); the next run probes the vendor once.",
            metadata=metadata, allow_retries=False,
        )
    problems = dict(report.failed)
    problems.update({symbol: f"not attempted: {report.stop_error}" for symbol in report.not_attempted})
    if problems and market_data.http_incomplete_policy == "fail":
        shown = "; ".join(f"{s}: {e}" for s, e in list(problems.items())[:5])
        raise dg.Failure(
            description=f"raw_bars: {len(problems)} of {report.symbols} symbol(s) not fetched ({shown}"
            f"{' ...' if len(problems) > 5 else ''}). {len(report.fetched)} fetched this attempt are kept in the raw "
            "tier; a retry or re-run asks only for the missing ones. Nothing was written to the partitions.",
            metadata=metadata, allow_retries=True,
        )
    outcome = quality.CheckOutcome(
        HTTP_COMPLETE_CHECK, not problems, True,
        "Every symbol's sessions in the window were fetched from the HTTP vendor.",
        {"missing_symbols": len(problems), "examples": dict(list(problems.items())[:10])},
    )
    return report.frame, outcome, summary


def keep_vendor_deliveries(provider: VendorFileProvider, dataset: str, lake: Lakehouse) -> dict[str, Any]:
    """Keep every landing file byte-for-byte in raw, quarantine its rejects, record supersessions.

    Everything is keyed by the file's content hash, so re-delivering a file changes nothing; a file's
    rejected rows go to the Delta table ``quarantine/vendor/<dataset>`` under that hash.
    """
    from wealth_pipeline.lakehouse import quarantine as quarantine_tables
    from wealth_pipeline.lakehouse.store import frame_to_parquet

    store = lake.store

    deliveries = provider.deliveries(dataset)
    new_files, problems = 0, []
    for d in deliveries:
        name = d.key.rsplit("/", 1)[-1]
        if store.put_bytes_if_absent(f"raw/vendor_files/{dataset}/{d.sha256}/{name}", d.data):
            new_files += 1
        report = d.rejects
        if d.error is not None:
            report = pl.DataFrame({"file_name": [store.uri(d.key)], "row_number": [None], "field": ["(file)"],
                                   "value": [None], "reason": [d.error], "dataset": [dataset]},
                                  schema={"file_name": pl.Utf8, "row_number": pl.Int64, "field": pl.Utf8,
                                          "value": pl.Utf8, "reason": pl.Utf8, "dataset": pl.Utf8})
        if report.height:
            quarantine_tables.write_file_report(lake, dataset, d.sha256, report)
            problems.append({"file": d.key, "error": d.error, "rejected_rows": report.height,
                             "examples": [f"row {r['row_number']} {r['field']}: {r['reason']}" for r in report.head(3).to_dicts()]})
    _, supersessions = provider.merged(dataset)
    if supersessions.height:
        digest = raw.frame_hash(supersessions)[:16]
        store.put_bytes(f"artifacts/vendor_supersessions/{dataset}/{digest}.parquet", frame_to_parquet(supersessions))
    return {"files": len(deliveries), "new_files": new_files, "problems": problems,
            "superseded_rows": supersessions.height,
            "supersession_examples": [str(r) for r in supersessions.head(5).rows()]}


def _make_raw_asset(dataset: RawDataset) -> dg.AssetsDefinition:
    checks = _raw_checks(dataset)
    asset_name = f"raw_{dataset.name}"

    @dg.asset(
        name=asset_name,
        group_name="ingest",
        partitions_def=trading_sessions,
        backfill_policy=single_run,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        description=dataset.description + " Immutable and content-hashed in the raw tier: a re-delivery of "
        "the same content is a no-op, different content becomes a new version that supersedes the old one.",
        check_specs=[c.spec(asset_name) for c in checks]
        + [dg.AssetCheckSpec(WINDOW_CHECK, asset=asset_name, blocking=True,
                             description="Every delivered row falls inside the requested partition window.")]
        + ([dg.AssetCheckSpec(DELIVERY_CHECK, asset=asset_name, blocking=False,
                              description="Every vendor file in the landing zone parsed without rejected rows (warns; bad rows are quarantined).")]
           if dataset.name in VENDOR_DATASETS else [])
        + ([dg.AssetCheckSpec(HTTP_COMPLETE_CHECK, asset=asset_name, blocking=True,
                              description="With an HTTP provider, every symbol's sessions in the window were fetched "
                              "(fails under the complete_others policy when some symbol could not be).")]
           if dataset.name == "bars" else []),
        retry_policy=publish.PROVIDER_RETRY,
        tags={"wealth/tier": "raw"},
        metadata=datasets.RAW[dataset.name].definition_metadata(),  # the column schema the UI shows
    )
    def _raw_asset(
        context: dg.AssetExecutionContext, market_data: MarketDataResource, lakehouse: LakehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        start, end = partition_window(context)
        provider = get_provider(market_data)
        store = lakehouse.get().store
        requests_before = request_counts()
        http_outcome: quality.CheckOutcome | None = None
        http_summary: dict[str, Any] | None = None
        try:
            if dataset.name == "bars" and isinstance(provider, HttpMarketData):
                fetched, http_outcome, http_summary = _fetch_http_bars(context, market_data, provider, store,
                                                                       start, end)
            else:
                try:  # the provider's rows, each with the provider that delivered it (issue 22)
                    fetched = row_sources.delivered(provider, dataset.name, start, end, lineage.rights())
                except CircuitOpenError as exc:
                    raise dg.Failure(description=f"{asset_name}: {exc}. Nothing was written (the previous state "
                                     "is kept); the next run probes the vendor once.", allow_retries=False) from None
                except ProviderConfigError as exc:
                    raise dg.Failure(description=f"configuration error: {exc}", allow_retries=False) from None
                except VendorFileError as exc:  # a factor/benchmark/risk-free file refused whole (issue 21)
                    raise dg.Failure(description=f"{asset_name}: {exc}", allow_retries=False) from None
                if dataset.name == "bars":
                    http_outcome = quality.CheckOutcome(HTTP_COMPLETE_CHECK, True, True,
                                                        f"Not an HTTP provider ({provider.name}).", {})
        finally:
            if isinstance(provider, HttpMarketData):
                provider.close()  # the connection pools; the vendor's breaker and rate limit stay
        frame = base.conform(fetched, dataset.schema)
        outside = frame.filter(~pl.col(dataset.date_column).is_between(start, end))
        outcomes = quality.evaluate(frame, checks, f"raw_{dataset.name}")
        outcomes.append(quality.CheckOutcome(
            WINDOW_CHECK, outside.is_empty(), True,
            "Every delivered row falls inside the requested partition window.",
            {"rows_outside": outside.height},
        ))
        vendor: dict[str, Any] | None = None
        if dataset.name in VENDOR_DATASETS:
            if isinstance(provider, VendorFileProvider):
                vendor = keep_vendor_deliveries(provider, dataset.name, lakehouse.get())
                if vendor["problems"]:
                    context.log.warning(f"{asset_name}: vendor files with problems (quarantined): {vendor['problems']}")
                outcomes.append(quality.CheckOutcome(DELIVERY_CHECK, not vendor["problems"], False,
                                                     "Every vendor file parsed without rejected rows.", {"problems": vendor["problems"]}))
            else:
                outcomes.append(quality.CheckOutcome(DELIVERY_CHECK, True, False, "No vendor files: the provider is "
                                                     f"{provider.name}.", {}))
        yield from quality.gate(outcomes, context.asset_key)
        if quality.blocking_failures(outcomes):
            # Deterministic: the same delivery fails the same checks on a retry, so the step fails once.
            raise dg.Failure(quality.failure_message(asset_name, outcomes), allow_retries=False)
        if http_outcome is not None:
            # After the gate: an incomplete HTTP fetch (complete_others policy) still writes what
            # it got (raw keeps every delivery) and fails this blocking check, so nothing
            # downstream runs on the partial partition.
            yield http_outcome.to_result(context.asset_key)
        writes = raw.write_versions(store, dataset.name, frame, dataset.date_column, calendars.weekdays(start, end))
        closed = closed_days(start, end)
        status_counts = {s: sum(1 for w in writes if w.status == s) for s in ("new", "unchanged", "superseded")}
        rows_by_day = {w.day.isoformat(): w.rows for w in writes}
        # each partition's own row count (the window's total is `window_rows`, in the window's summary)
        per_partition = add_per_partition(context, context.asset_key, {
            key: {"dagster/row_count": rows_by_day.get(key, 0)} for key in context.partition_keys})
        metadata: dict[str, object] = {
            "window_rows": frame.height,
            "provider": provider.name,
            "window": f"{start} .. {end}",
            "partitions_written": dg.MetadataValue.json(status_counts),
            "path": dg.MetadataValue.path(store.uri(f"raw/{dataset.name}")),
            "preview": dg.MetadataValue.md(frame.head(5).to_pandas().to_markdown(index=False)) if frame.height else "no rows",
        }
        sources = lineage.raw_sources(context, provider, dataset.name, start, end)  # issue 22: per partition
        superseded = [{"date": str(w.day), "new": w.key, "previous": w.superseded_key} for w in writes if w.status == "superseded"]
        if superseded:
            metadata["superseded"] = dg.MetadataValue.json(superseded[:50])
        if vendor is not None:
            metadata["vendor_files"] = dg.MetadataValue.json(vendor)
        http_requests = _requests_since(requests_before)
        if isinstance(provider, HttpMarketData):
            metadata["http_requests"] = dg.MetadataValue.json(http_requests)
            metadata["http_request_count"] = sum(http_requests.values())
        if http_summary is not None:
            metadata["http_fetch"] = dg.MetadataValue.json(http_summary)
        if closed:
            metadata["market_closed"] = dg.MetadataValue.json([str(d) for d in closed])
        if start == end and start in closed:
            metadata["market_status"] = "closed"
            context.log.info(f"{start} is not a session on any listing exchange: market closed, nothing to ingest")
        everywhere = add_window_summary(context, context.asset_key, metadata, ("provider", "window", "market_status"))
        yield dg.MaterializeResult(metadata={**per_partition, **everywhere, **sources})

    return _raw_asset


raw_assets = [_make_raw_asset(d) for d in RAW_DATASETS]

_SYMBOL_MASTER_CHECKS = [
    quality.Check("schema", "symbol_master has the documented columns and types.",
                  predicate=quality.has_columns(base.SYMBOL_MASTER_SCHEMA)),
    quality.Check("symbol_unique", "One row per symbol.", predicate=quality.unique_keys(["symbol"])),
    quality.Check("identifiers_valid", "ISIN, CUSIP and FIGI check digits hold, a CUSIP matches its ISIN, every row "
                  "has a security_id (core.identifiers).", predicate=lambda frame: _identifier_outcome(frame)),
    quality.Check(
        "known_exchanges_and_currencies",
        "Every listing is on an exchange with a calendar and has an ISO currency code.",
        expectations=lambda: _symbol_master_expectations(),
    ),
]


def _identifier_outcome(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    problems = identifiers.frame_problems(frame)
    return problems.is_empty(), {"bad_identifiers": problems.height,
                                 "examples": [f"row {r}, {f} {v!r}: {why}" for r, f, v, why in problems.head(5).rows()]}


def _symbol_master_expectations() -> list:
    import great_expectations as gx

    return [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="symbol"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="exchange", value_set=list(calendars.EXCHANGE_CALENDAR_CODES)),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="currency", regex=r"^[A-Z]{3}$"),
    ]


@dg.asset(
    group_name="ingest",
    kinds={"polars", "parquet", "postgres"},
    owners=OWNERS,
    description="The universe: one row per listed security (exchange, currency, sector), content-hashed in the "
    "raw tier, copied to the processed tier and loaded to `ref.securities`.",
    check_specs=[c.spec("symbol_master") for c in _SYMBOL_MASTER_CHECKS],
    retry_policy=publish.PROVIDER_RETRY,
    tags={"wealth/tier": "raw"},
    metadata=datasets.SYMBOL_MASTER.definition_metadata(),
)
def symbol_master(
    context: dg.AssetExecutionContext,
    market_data: MarketDataResource,
    lakehouse: LakehouseResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    provider = get_provider(market_data)
    try:
        delivered = provider.symbol_master()
    except VendorFileError as exc:  # a bad vendor master fails the same way every time (issue 21)
        raise dg.Failure(str(exc), allow_retries=False) from exc
    frame = universe.complete_master(delivered).sort("symbol")  # derives security_id where a provider has none
    outcomes = quality.evaluate(frame, _SYMBOL_MASTER_CHECKS, "symbol_master")
    yield from quality.gate(outcomes, context.asset_key)
    if quality.blocking_failures(outcomes):
        raise dg.Failure(quality.failure_message("symbol_master", outcomes), allow_retries=False)
    store = lakehouse.get().store
    key = f"raw/symbol_master/{raw.frame_hash(frame)[:16]}.parquet"
    from wealth_pipeline.lakehouse.store import frame_to_parquet

    created = store.put_bytes_if_absent(key, frame_to_parquet(frame))
    lakehouse.get().write_dataset("processed", "symbol_master", frame)
    load = warehouse.replace_table("ref.securities", frame, asset="symbol_master", run_id=context.run_id)
    history = publish_history(context, provider, frame, lakehouse.get(), warehouse)  # issue 21
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "provider": provider.name,
            "synthetic": bool(frame["is_synthetic"].all()),
            "by_exchange": dg.MetadataValue.json(dict(frame.group_by("exchange").len().sort("exchange").iter_rows())),
            "raw_version": "new" if created else "unchanged",
            "warehouse_table": "ref.securities",
            "warehouse_checksum": load.checksum,
            "path": dg.MetadataValue.path(store.uri(key)),
            **history,
        }
    )
