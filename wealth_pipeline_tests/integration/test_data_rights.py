"""Data rights on a real warehouse (both flavours): lineage from real Dagster runs, licensed exports.

Exports read marts as real BI logins (row-level security), trace rows through ``ops.lineage``,
write CSV/parquet with attributions and watermarks, refuse what the registry and entitlements do
not allow (writing nothing), and audit every attempt in ``ops.exports``.
"""

import datetime as dt
import json
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealth_pipeline.defs import datasets
from wealth_pipeline.defs import lineage as lineage_hook
from wealth_pipeline.defs.partitions import trading_sessions
from wealth_pipeline.defs.resources import WarehouseResource
from wealth_pipeline.providers.landing import LandingZone, VendorFileProvider
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline.rights import export, registry
from wealth_pipeline.warehouse import migrate
from wealth_pipeline.warehouse.roles import create_bi_user, drop_bi_user
from wealth_pipeline_tests.bi_logins import bi_logins

pytestmark = pytest.mark.integration

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)
RIGHTS_TEXT = """
providers:
  synthetic: {kind: synthetic, policy: allowed, attribution: "Synthetic market."}
  fred: {kind: http, policy: allowed, attribution: "Source: FRED."}
  alphavantage:
    kind: http
    policy: restricted
    licence: av-premium
    attribution: "Prices: Alpha Vantage."
    watermark: "AV - licensed use only"
  vendor: {kind: landing, policy: restricted, licence: vendor-lic, attribution: "Landing vendor."}
  acme: {kind: landing, policy: metadata-only, attribution: "ACME.", files: ["**/*-acme.*"]}
"""
RIGHTS = registry.parse(RIGHTS_TEXT, "test registry")
NO_ENV: dict[str, str] = {}


@pytest.fixture
def wh(flavoured_db: tuple[str, str]) -> str:
    """A migrated warehouse with bars, FX, two users' portfolios and three test marts."""
    _, url = flavoured_db
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        for day, close in ((D1, 10.0), (D2, 11.0), (D3, 12.0)):
            for symbol in ("AAA", "BBB"):
                conn.execute(
                    "INSERT INTO market.bars_daily (symbol, session_date, currency, open, high, low, close) "
                    "VALUES (%s, %s, 'USD', %s, %s, %s, %s)",
                    (symbol, day, close, close, close, close),
                )
            conn.execute(
                "INSERT INTO market.fx_rates (base_currency, quote_currency, session_date, rate) "
                "VALUES ('USD', 'CAD', %s, 1.3)",
                (day,),
            )
        conn.execute(
            "INSERT INTO portfolio.users (user_id, display_name) VALUES ('alice', 'Alice'), ('bob', 'Bob')"
        )
        conn.execute(
            "INSERT INTO portfolio.portfolios (portfolio_id, owner_id, name, base_currency) VALUES "
            "('pa1', 'alice', 'Alice main', 'USD'), ('pb1', 'bob', 'Bob main', 'USD')"
        )
        conn.execute(
            "INSERT INTO portfolio.transactions (portfolio_id, transaction_id, trade_date, type, symbol, quantity, "
            "price, amount, currency) VALUES "
            "('pa1', 't1', %s, 'buy', 'AAA', 10, 10, -100, 'USD'), ('pb1', 't1', %s, 'buy', 'BBB', 5, 11, -55, 'USD')",
            (D1, D2),
        )
        conn.execute("SET ROLE wealth_owner")
        conn.execute(
            "CREATE VIEW marts.rights_bars AS SELECT symbol, session_date, close FROM market.bars_daily"
        )
        conn.execute(
            "CREATE VIEW marts.rights_mixed AS SELECT b.symbol, b.session_date, b.close * f.rate AS close_cad "
            "FROM market.bars_daily b JOIN market.fx_rates f USING (session_date)"
        )
        conn.execute(
            "CREATE VIEW marts.rights_trades WITH (security_invoker = true) AS "
            "SELECT t.portfolio_id, t.trade_date AS session_date, t.symbol, t.amount, b.close "
            "FROM portfolio.transactions t JOIN market.bars_daily b "
            "ON b.symbol = t.symbol AND b.session_date = t.trade_date"
        )
        conn.execute("SELECT ops.enable_portfolio_rls('marts.rights_trades')")
    return url


@pytest.fixture
def logins(wh: str) -> Iterator[dict[str, str]]:
    with bi_logins(wh) as created:
        yield created


def _lineage(url: str, dataset: str, per_day: dict[dt.date, list[str]]) -> None:
    with psycopg.connect(url) as conn:
        for day, sources in per_day.items():
            conn.execute(
                "INSERT INTO ops.lineage (dataset, session_date, sources) VALUES (%s, %s, %s) "
                "ON CONFLICT (dataset, session_date) DO UPDATE SET sources = EXCLUDED.sources",
                (dataset, day, sources),
            )


def _audit(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT exported_by, mart, format, outcome, sources, row_count, excluded_rows, watermark, "
            "filters FROM ops.exports ORDER BY export_id"
        ).fetchall()


def _export(
    logins: dict[str, str],
    wh: str,
    mart: str,
    out: Path,
    fmt: str = "csv",
    user: str = "alice",
    inputs: tuple[str, ...] = ("market.bars_daily",),
    **kwargs,
) -> export.ExportResult:
    kwargs.setdefault("env", NO_ENV)
    return export.export_mart(
        mart, out, fmt, read_url=logins[user], audit_url=wh, inputs=inputs, rights=RIGHTS, **kwargs
    )


def _login(url: str) -> str:
    return conninfo_to_dict(url)["user"]


def test_an_allowed_export_carries_every_attribution(wh: str, logins: dict[str, str], tmp_path: Path) -> None:
    _lineage(wh, "bars", {D1: ["synthetic"], D2: ["synthetic"], D3: ["synthetic"]})
    _lineage(wh, "fx_rates", {D1: ["fred"], D2: ["fred"], D3: ["fred"]})
    out = tmp_path / "mixed.csv"
    result = _export(logins, wh, "rights_mixed", out, inputs=("market.bars_daily", "market.fx_rates"))
    assert (result.rows, result.sources, result.watermark) == (6, ("fred", "synthetic"), None)
    text = out.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "# attribution (fred): Source: FRED." in header
    assert "# attribution (synthetic): Synthetic market." in header
    assert "# sources: fred, synthetic" in header
    rows = pl.read_csv(out, comment_prefix="#")
    assert rows.height == 6 and rows.columns == ["symbol", "session_date", "close_cad"]
    assert sorted(rows["close_cad"].to_list()) == pytest.approx(
        sorted([c * 1.3 for c in (10.0, 11.0, 12.0)] * 2)
    )
    side = json.loads(result.sidecar.read_text(encoding="utf-8"))
    assert side["attributions"] == {"fred": "Source: FRED.", "synthetic": "Synthetic market."}
    assert side["exported_by"] == _login(logins["alice"]) and side["rows"] == 6
    assert _audit(wh) == [
        (_login(logins["alice"]), "rights_mixed", "csv", "written", ["fred", "synthetic"], 6, 0, None, [])
    ]


def test_a_restricted_source_without_entitlement_is_refused_and_nothing_written(
    wh: str, logins: dict[str, str], tmp_path: Path
) -> None:
    _lineage(wh, "bars", {D1: ["synthetic"], D2: ["alphavantage"], D3: ["alphavantage"]})
    out = tmp_path / "bars.csv"
    with pytest.raises(export.ExportRefused) as caught:
        _export(logins, wh, "rights_bars", out)
    message = str(caught.value)
    assert "restricted providers without an entitlement: alphavantage (licence av-premium)" in message
    assert "nothing was written" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []
    # Another login's entitlement does not help alice.
    with psycopg.connect(wh) as conn:
        conn.execute(
            "INSERT INTO ref.entitlements (licence, grantee) VALUES ('av-premium', %s)",
            (_login(logins["bob"]),),
        )
    with pytest.raises(export.ExportRefused):
        _export(logins, wh, "rights_bars", out)
    assert list(tmp_path.iterdir()) == []
    audit = _audit(wh)
    assert [(a[3], a[4], a[5]) for a in audit] == [("refused", ["alphavantage", "synthetic"], 0)] * 2


@pytest.mark.parametrize("grant", ["environment", "table"])
def test_with_the_entitlement_the_export_is_written_and_watermarked(
    wh: str, logins: dict[str, str], tmp_path: Path, grant: str
) -> None:
    _lineage(wh, "bars", {D1: ["synthetic"], D2: ["alphavantage"], D3: ["alphavantage"]})
    env = {"WEALTH_ENTITLEMENTS": "av-premium"} if grant == "environment" else {}
    if grant == "table":
        with psycopg.connect(wh) as conn:
            conn.execute(
                "INSERT INTO ref.entitlements (licence, grantee) VALUES ('av-premium', %s), "
                "('vendor-lic', '*')",
                (_login(logins["alice"]),),
            )
            conn.execute(
                "INSERT INTO ref.entitlements (licence, grantee, valid_until) VALUES ('av-premium', '*', %s)",
                (dt.date(2000, 1, 1),),
            )  # expired: irrelevant beside alice's own grant
    out = tmp_path / "bars.parquet"
    result = _export(logins, wh, "rights_bars", out, fmt="parquet", env=env)
    assert result.watermark == "AV - licensed use only"
    table = pq.read_table(out)
    frame = pl.from_arrow(table)
    assert frame.height == 6 and set(frame["watermark"].to_list()) == {"AV - licensed use only"}
    rights_doc = json.loads(table.schema.metadata[export.PARQUET_METADATA_KEY])
    assert rights_doc["attributions"] == {
        "alphavantage": "Prices: Alpha Vantage.",
        "synthetic": "Synthetic market.",
    }
    assert rights_doc["watermark"] == "AV - licensed use only"
    assert _audit(wh)[-1][3:8] == ("written", ["alphavantage", "synthetic"], 6, 0, "AV - licensed use only")


def test_an_expired_entitlement_does_not_count(wh: str, logins: dict[str, str], tmp_path: Path) -> None:
    _lineage(wh, "bars", {D1: ["alphavantage"], D2: ["alphavantage"], D3: ["alphavantage"]})
    with psycopg.connect(wh) as conn:
        conn.execute(
            "INSERT INTO ref.entitlements (licence, grantee, valid_until) VALUES ('av-premium', '*', %s)",
            (dt.date.today() - dt.timedelta(days=1),),
        )
    with pytest.raises(export.ExportRefused, match="alphavantage"):
        _export(logins, wh, "rights_bars", tmp_path / "x.csv")


def test_rows_of_a_metadata_only_source_are_left_out(wh: str, logins: dict[str, str], tmp_path: Path) -> None:
    _lineage(wh, "bars", {D1: ["synthetic"], D2: ["acme"], D3: ["synthetic"]})
    out = tmp_path / "bars.csv"
    result = _export(logins, wh, "rights_bars", out)
    assert (result.rows, result.excluded_rows, result.excluded_sources) == (4, 2, ("acme",))
    assert result.attributions == {"synthetic": "Synthetic market."}  # nothing of acme's is in the file
    rows = pl.read_csv(out, comment_prefix="#", try_parse_dates=True)
    assert sorted(set(rows["session_date"].to_list())) == [D1, D3]
    assert "# excluded: 2 row(s) depending on metadata-only provider(s) acme" in out.read_text(
        encoding="utf-8"
    )
    assert _audit(wh)[-1][3:7] == ("written", ["synthetic"], 4, 2)


def test_missing_lineage_refuses_the_export(wh: str, logins: dict[str, str], tmp_path: Path) -> None:
    _lineage(wh, "bars", {D1: ["synthetic"]})
    with pytest.raises(
        export.ExportRefused,
        match=r"no source lineage recorded for bars on 2 session\(s\) from "
        r"2024-01-03 to 2024-01-04",
    ):
        _export(logins, wh, "rights_bars", tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []


def test_exports_respect_row_level_security(wh: str, logins: dict[str, str], tmp_path: Path) -> None:
    _lineage(wh, "bars", {D1: ["synthetic"], D2: ["synthetic"], D3: ["synthetic"]})
    inputs = ("market.bars_daily", "portfolio.transactions")
    for user, expected in (("alice", [("pa1", D1, "AAA")]), ("bob", [("pb1", D2, "BBB")])):
        out = tmp_path / f"{user}.csv"
        result = _export(logins, wh, "rights_trades", out, user=user, inputs=inputs)
        rows = pl.read_csv(out, comment_prefix="#", try_parse_dates=True)
        assert rows.select("portfolio_id", "session_date", "symbol").rows() == expected
        assert result.exported_by == _login(logins[user]) and result.untracked_inputs == (
            "portfolio.transactions",
        )
    assert [(a[0], a[5]) for a in _audit(wh)] == [(_login(logins["alice"]), 1), (_login(logins["bob"]), 1)]


def test_hostile_where_is_refused_or_stays_a_value(wh: str, logins: dict[str, str], tmp_path: Path) -> None:
    _lineage(wh, "bars", {D1: ["synthetic"], D2: ["synthetic"], D3: ["synthetic"]})
    out = tmp_path / "bars.csv"
    for hostile in ("1=1 OR 1=1", "symbol; DROP TABLE market.bars_daily; --=x", "close > 0 OR true"):
        with pytest.raises(export.ExportError):
            _export(logins, wh, "rights_bars", out, where=[hostile])
    with pytest.raises(
        export.ExportError,
        match=re.escape(
            "column 'volume' is not a column of marts.rights_bars; "
            "expected one of symbol, session_date, close"
        ),
    ):
        _export(logins, wh, "rights_bars", out, where=["volume=1"])
    with pytest.raises(export.ExportError, match="--where: invalid input syntax for type date"):
        _export(logins, wh, "rights_bars", out, where=["session_date=yesterday'; --"])
    assert not out.exists()
    # Quotes and SQL inside a value are a value: no row has that symbol; the table is intact.
    result = _export(logins, wh, "rights_bars", out, where=["symbol=AAA' OR '1'='1"])
    assert result.rows == 0
    result = _export(logins, wh, "rights_bars", out, where=["symbol=AAA", "session_date>=2024-01-03"])
    assert result.rows == 2
    assert pl.read_csv(out, comment_prefix="#")["close"].to_list() == [11.0, 12.0]
    with psycopg.connect(wh) as conn:
        assert conn.execute("SELECT count(*) FROM market.bars_daily").fetchone()[0] == 6
    assert _audit(wh)[-1][8] == [
        {"column": "symbol", "operator": "=", "value": "AAA"},
        {"column": "session_date", "operator": ">=", "value": "2024-01-03"},
    ]


def test_the_loader_login_can_audit_and_read_entitlements(
    wh: str, logins: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded default audits through wealth_loader (the pipeline's login), which owns nothing."""
    from wealth_pipeline.warehouse.roles import ensure_login_roles

    password = secrets.token_urlsafe(12)
    monkeypatch.setenv("WEALTH_LOADER_PASSWORD", password)
    monkeypatch.delenv("WEALTH_BI_PASSWORD", raising=False)
    monkeypatch.delenv("WEALTH_OWNER_PASSWORD", raising=False)
    assert ensure_login_roles(wh) == ["wealth_loader"]
    loader = make_conninfo(wh, user="wealth_loader", password=password)
    _lineage(wh, "bars", {D1: ["alphavantage"], D2: ["alphavantage"], D3: ["alphavantage"]})
    with psycopg.connect(wh) as conn:
        conn.execute(
            "INSERT INTO ref.entitlements (licence, grantee) VALUES ('av-premium', %s)",
            (_login(logins["alice"]),),
        )
    result = export.export_mart(
        "rights_bars",
        tmp_path / "b.csv",
        "csv",
        read_url=logins["alice"],
        audit_url=loader,
        inputs=("market.bars_daily",),
        rights=RIGHTS,
        env=NO_ENV,
    )
    assert result.rows == 6 and result.watermark == "AV - licensed use only"
    assert _audit(wh)[-1][3] == "written"


def test_bi_logins_cannot_read_entitlements_or_the_audit(wh: str, logins: dict[str, str]) -> None:
    with psycopg.connect(logins["alice"]) as conn:
        for table in ("ref.entitlements", "ops.exports", "ops.lineage"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM {table}")
            conn.rollback()


# ---- lineage from real Dagster runs ------------------------------------------------------------------------
def test_raw_sources_and_the_publish_hook_record_lineage_per_session(wh: str, tmp_path: Path) -> None:
    """A landing zone with two vendors' FX files, a synthetic reference: raw metadata -> ops.lineage -> union."""
    (tmp_path / "fx_rates").mkdir()
    (tmp_path / "fx_rates" / "2024-01-02T2200Z-acme.csv").write_text(
        "session_date,base_currency,quote_currency,rate\n2024-01-02,USD,CAD,1.33\n", encoding="utf-8"
    )
    (tmp_path / "fx_rates" / "2024-01-03T2200Z-other.csv").write_text(
        "session_date,base_currency,quote_currency,rate\n2024-01-03,USD,CAD,1.34\n", encoding="utf-8"
    )
    provider = VendorFileProvider(LandingZone.from_uri(str(tmp_path)), SyntheticMarket(universe_size=5))
    rights_file = tmp_path / "rights.yaml"
    rights_file.write_text(RIGHTS_TEXT, encoding="utf-8")

    @dg.asset(name="raw_fx_rates", partitions_def=trading_sessions)
    def raw_fx(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        start, end = (
            dt.date.fromisoformat(k)
            for k in (context.partition_key_range.start, context.partition_key_range.end)
        )
        return dg.MaterializeResult(
            metadata=lineage_hook.raw_sources(context, provider, "fx_rates", start, end)
        )

    @dg.asset(name="raw_factor_returns", partitions_def=trading_sessions)
    def raw_factors(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        start, end = (
            dt.date.fromisoformat(k)
            for k in (context.partition_key_range.start, context.partition_key_range.end)
        )
        return dg.MaterializeResult(
            metadata=lineage_hook.raw_sources(context, provider, "factor_returns", start, end)
        )

    def published(name: str, deps: list[str]) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=trading_sessions, deps=deps)
        def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
            start, end = (
                dt.date.fromisoformat(k)
                for k in (context.partition_key_range.start, context.partition_key_range.end)
            )
            return dg.MaterializeResult(
                metadata=lineage_hook.record(context, datasets.get(name), start, end, warehouse)
            )

        return _asset

    assets = [
        raw_fx,
        raw_factors,
        published("fx_rates", ["raw_fx_rates"]),
        published("factor_returns", ["raw_factor_returns"]),
        published("portfolio_valuations", ["fx_rates", "factor_returns"]),
    ]
    instance = dg.DagsterInstance.ephemeral()
    monkey = pytest.MonkeyPatch()
    monkey.setattr(registry, "REGISTRY_FILE", rights_file)
    try:
        result = dg.materialize(
            assets,
            instance=instance,
            resources={"warehouse": WarehouseResource(url=wh)},
            tags={
                "dagster/asset_partition_range_start": "2024-01-02",
                "dagster/asset_partition_range_end": "2024-01-04",
            },
        )
    finally:
        monkey.undo()
    assert result.success
    with psycopg.connect(wh) as conn:
        rows = conn.execute("SELECT dataset, session_date, sources FROM ops.lineage ORDER BY 1, 2").fetchall()
    assert rows == [
        ("factor_returns", D1, ["synthetic"]),
        ("factor_returns", D2, ["synthetic"]),
        ("factor_returns", D3, ["synthetic"]),
        ("fx_rates", D1, ["acme"]),
        ("fx_rates", D2, ["vendor"]),
        ("fx_rates", D3, []),
        ("portfolio_valuations", D1, ["acme", "synthetic"]),
        ("portfolio_valuations", D2, ["synthetic", "vendor"]),
        ("portfolio_valuations", D3, ["synthetic"]),
    ]
    # The UI: each partition's sources, the window's sources with their licence status.
    events = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("portfolio_valuations"), asset_partitions=["2024-01-03"]),
        limit=1,
    ).records
    metadata = events[0].asset_materialization.metadata
    assert metadata["sources"].value == ["synthetic", "vendor"]
    assert metadata["licence_status"].value == {
        "acme": "metadata-only",
        "synthetic": "allowed",
        "vendor": "restricted: needs licence vendor-lic",
    }


def test_a_raw_partition_without_recorded_sources_is_unknown(wh: str) -> None:
    @dg.asset(name="raw_fx_rates", partitions_def=trading_sessions)
    def raw_fx() -> None:  # materialized before lineage existed: no `sources` metadata
        return None

    @dg.asset(name="fx_rates", partitions_def=trading_sessions, deps=["raw_fx_rates"])
    def fx(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        return dg.MaterializeResult(
            metadata=lineage_hook.record(context, datasets.get("fx_rates"), day, day, warehouse)
        )

    result = dg.materialize(
        [raw_fx, fx], partition_key="2024-01-02", resources={"warehouse": WarehouseResource(url=wh)}
    )
    assert result.success
    with psycopg.connect(wh) as conn:
        assert conn.execute("SELECT sources FROM ops.lineage WHERE dataset = 'fx_rates'").fetchall() == [
            (["unknown"],)
        ]


def test_the_real_market_assets_record_their_provider_per_session(pg_url: str, tmp_path: Path) -> None:
    """The ingest and processed assets of the code location, synthetic provider: every market dataset's lineage."""
    from wealth_pipeline.cli import materialize_range
    from wealth_pipeline.definitions import build_definitions
    from wealth_pipeline.defs.resources import MarketDataResource
    from wealth_pipeline.lakehouse.resource import LakehouseResource

    migrate.upgrade(pg_url)
    resources = {
        "warehouse": WarehouseResource(url=pg_url),
        "lakehouse": LakehouseResource(uri=str(tmp_path / "lake")),
        "market_data": MarketDataResource(synthetic_universe=5),
    }
    instance = dg.DagsterInstance.ephemeral()
    materialize_range(
        "2024-01-02",
        "2024-01-04",
        "group:ingest or group:processed",
        progress=False,
        definitions=build_definitions(resources),
        instance=instance,
        raise_on_error=True,
    )
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT dataset, session_date, sources FROM ops.lineage ORDER BY 1, 2").fetchall()
    market = ("bars", "benchmark_returns", "corporate_actions", "factor_returns", "fx_rates")
    assert [r for r in rows if r[0] in market] == [
        (name, day, ["synthetic"]) for name in market for day in (D1, D2, D3)
    ]
    raw = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_bars"), asset_partitions=["2024-01-03"]), limit=1
    ).records
    assert raw[0].asset_materialization.metadata["sources"].value == ["synthetic"]
    bars = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("bars"), asset_partitions=["2024-01-03"]), limit=1
    ).records
    assert bars[0].asset_materialization.metadata["licence_status"].value == {"synthetic": "allowed"}


def test_an_assets_own_earlier_partitions_add_no_unknown_source(wh: str) -> None:
    provider = SyntheticMarket(universe_size=5)

    @dg.asset(name="raw_bars", partitions_def=trading_sessions)
    def raw(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        return dg.MaterializeResult(metadata=lineage_hook.raw_sources(context, provider, "bars", day, day))

    own_history = dg.AssetDep(
        "indicators", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
    )

    @dg.asset(name="indicators", partitions_def=trading_sessions, deps=["raw_bars", own_history])
    def indicators(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        return dg.MaterializeResult(
            metadata=lineage_hook.record(context, datasets.get("indicators"), day, day, warehouse)
        )

    assert dg.materialize(
        [raw, indicators], partition_key="2024-01-03", resources={"warehouse": WarehouseResource(url=wh)}
    ).success
    with psycopg.connect(wh) as conn:
        assert conn.execute("SELECT sources FROM ops.lineage WHERE dataset = 'indicators'").fetchall() == [
            (["synthetic"],)
        ]


def test_a_bad_registry_fails_a_raw_asset_once_and_is_reported_after_a_load(
    wh: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "rights.yaml"
    bad.write_text(
        "providers:\n  synthetic: {kind: synthetic, policy: sometimes, attribution: S}\n", encoding="utf-8"
    )
    monkeypatch.setattr(registry, "REGISTRY_FILE", bad)
    provider = SyntheticMarket(universe_size=5)

    @dg.asset(
        name="raw_fx_rates", partitions_def=trading_sessions, retry_policy=dg.RetryPolicy(max_retries=2)
    )
    def raw_fx(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        return dg.MaterializeResult(
            metadata=lineage_hook.raw_sources(context, provider, "fx_rates", day, day)
        )

    result = dg.materialize([raw_fx], partition_key="2024-01-02", raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1  # not retried
    message = failures[0].step_failure_data.user_failure_data.description
    assert message.startswith(
        f"configuration error: rights registry {bad.resolve()}: providers.synthetic.policy: "
        "'sometimes' is not valid"
    )

    @dg.asset(name="fx_rates", partitions_def=trading_sessions)
    def fx(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        return dg.MaterializeResult(
            metadata=lineage_hook.record(context, datasets.get("fx_rates"), day, day, warehouse)
        )

    published = dg.materialize(
        [fx], partition_key="2024-01-02", resources={"warehouse": WarehouseResource(url=wh)}
    )
    status = published.asset_materializations_for_node("fx_rates")[0].metadata["licence_status"].value
    assert status.startswith("unknown: configuration error: rights registry ")
    with psycopg.connect(wh) as conn:
        assert conn.execute("SELECT sources FROM ops.lineage WHERE dataset = 'fx_rates'").fetchall() == [
            ([],)
        ]


# ---- the marts the pipeline builds (the session's shared marts warehouse) ----------------------------------
@pytest.fixture(scope="module", params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The marts warehouse test_dbt_marts and test_bi_reads share (built once per flavour and session)."""
    from wealth_pipeline_tests.integration.test_dbt_marts import build_marts_warehouse

    server = request.getfixturevalue(
        "pg_server_url" if request.param == "postgres" else "timescale_server_url"
    )
    return build_marts_warehouse(server, tmp_path_factory.mktemp(f"marts-{request.param}"))


def test_exports_of_the_marts_the_pipeline_built(built, tmp_path: Path) -> None:
    """security_daily traces through the dbt manifest to bars, indicators and exposures, all synthetic;
    model_signals' predictions were written around the assets (no lineage): refused."""
    from wealth_pipeline.defs.marts.project import dbt_project, prepare_manifest

    url = built.warehouse_url
    # The UI: each mart's materialization shows its inputs' sources (portfolio and model rows were
    # written around the assets: unknown).
    events = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in built.runs[-1]["result"].get_asset_materialization_events()
    }
    assert events["marts/security_daily"]["window_sources"].value == ["synthetic"]
    assert events["marts/security_daily"]["licence_status"].value == {"synthetic": "allowed"}
    assert "unknown" in events["marts/model_signals"]["window_sources"].value
    assert (
        events["marts/model_signals"]["licence_status"].value["unknown"]
        == "not in the rights registry: exports refused"
    )
    assert "window_sources" not in events["staging/stg_bars_daily"]
    role, password = f"bi_rights_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    user = f"rights_{uuid.uuid4().hex[:6]}"
    create_bi_user(url, user, role, password)
    login = make_conninfo(url, user=role, password=password)
    manifest = prepare_manifest(dbt_project)
    try:
        out = tmp_path / "aapl.parquet"
        result = export.export_mart(
            "security_daily",
            out,
            "parquet",
            read_url=login,
            audit_url=url,
            manifest=manifest,
            where=["symbol=AAPL"],
            env=NO_ENV,
        )
        expected = built.query("SELECT count(*) FROM marts.security_daily WHERE symbol = 'AAPL'")[0][0]
        assert expected > 10 and result.rows == expected
        assert result.sources == ("synthetic",) and result.watermark is None
        assert result.untracked_inputs == ("ref.securities",)
        frame = pl.read_parquet(out)
        assert set(frame["symbol"].to_list()) == {"AAPL"} and "watermark" not in frame.columns
        assert json.loads(pq.read_schema(out).metadata[export.PARQUET_METADATA_KEY])["attributions"] == {
            "synthetic": registry.load().providers["synthetic"].attribution
        }
        with pytest.raises(export.ExportRefused, match="no source lineage recorded for predictions"):
            export.export_mart(
                "model_signals",
                tmp_path / "s.csv",
                "csv",
                read_url=login,
                audit_url=url,
                manifest=manifest,
                env=NO_ENV,
            )
        assert not (tmp_path / "s.csv").exists()
    finally:
        drop_bi_user(url, role)
        with psycopg.connect(url) as conn:
            conn.execute("DELETE FROM portfolio.users WHERE user_id = %s", (user,))
