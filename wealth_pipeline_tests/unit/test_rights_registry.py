"""The rights registry (issue 22): validation errors, the export policy, landing-vendor matching, lineage inputs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from wealth_pipeline.core import calendars
from wealth_pipeline.providers.http_adapters import HttpMarketData
from wealth_pipeline.providers.landing import LandingZone, VendorFileProvider
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline.rights import export, lineage, registry

GOOD = """
providers:
  synthetic: {kind: synthetic, policy: allowed, attribution: "Synthetic."}
  fred: {kind: http, policy: allowed, attribution: "Source: FRED."}
  alphavantage:
    kind: http
    policy: restricted
    licence: av-premium
    attribution: "Alpha Vantage."
    watermark: "AV licensed"
    exports:
      api: {policy: metadata-only}
      report: {watermark: false, attribution: false}
  vendor: {kind: landing, policy: restricted, licence: vendor-lic, attribution: "Landing vendor."}
  acme: {kind: landing, policy: metadata-only, attribution: "ACME.", files: ["**/*-acme.*"]}
"""


def test_the_repository_registry_loads_and_covers_every_provider() -> None:
    rights = registry.load()
    # The synthetic market, the landing zone's default entry and each HTTP adapter.
    names = {SyntheticMarket.name, VendorFileProvider.name}
    from wealth_pipeline.providers.http_adapters import AlphaVantageDailyBars, FredRates

    names |= {AlphaVantageDailyBars.name, FredRates.name}
    assert names <= set(rights.providers)
    assert HttpMarketData.name not in rights.providers  # the composite: lineage names its adapters


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("providers: [1, 2", "not valid YAML at line 1"),
        ("- a\n- b\n", "expected a mapping with key `providers`, got list"),
        (
            GOOD.replace('policy: allowed, attribution: "Synthetic."', 'policy: forbid, attribution: "S"'),
            "providers.synthetic.policy: 'forbid' is not valid; expected one of allowed, restricted, metadata-only",
        ),
        (
            GOOD.replace("    licence: av-premium\n", ""),
            "providers.alphavantage: a restricted provider needs `licence`",
        ),
        (
            GOOD.replace("api: {policy: metadata-only}", "fax: {policy: allowed}"),
            "providers.alphavantage.exports.fax: 'fax' is not valid; expected one of csv, parquet, report, api",
        ),
        (
            GOOD.replace("kind: synthetic,", "kind: synthetic, colour: red,"),
            "providers.synthetic.colour: unknown key; valid keys: kind, policy, attribution",
        ),
        (
            GOOD.replace(
                'kind: http, policy: allowed, attribution: "Source: FRED."',
                'kind: http, policy: allowed, attribution: ""',
            ),
            "providers.fred.attribution: String should have at least 1 character",
        ),
        (
            GOOD.replace(
                'kind: http, policy: allowed, attribution: "Source: FRED."',
                "kind: http, policy: allowed, attribution: F, files: ['x']",
            ),
            "providers.fred: `files` (landing-zone patterns) is only valid for kind: landing",
        ),
        (
            GOOD.replace("  fred:", "  Fred:"),
            "providers: provider key 'Fred' is not valid: lowercase letters",
        ),
    ],
)
def test_a_bad_registry_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "rights.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(registry.RegistryError) as caught:
        registry.load(path)
    error = str(caught.value)
    assert "\n" not in error
    assert error.startswith(f"rights registry {path.resolve()}: "), error
    assert message in error, error


def test_a_missing_registry_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(registry.RegistryError, match=r"rights registry .*nope\.yaml: cannot read it"):
        registry.load(tmp_path / "nope.yaml")


def test_the_policy_per_export_type() -> None:
    rights = registry.parse(GOOD)
    refused = registry.decide(rights, ["synthetic", "alphavantage"], "csv", set())
    assert not refused.allowed
    assert refused.missing == {"alphavantage": "av-premium"}
    assert refused.refusal().startswith(
        "restricted providers without an entitlement: alphavantage (licence av-premium)"
    )
    allowed = registry.decide(rights, ["synthetic", "alphavantage"], "csv", {"av-premium"})
    assert allowed.allowed
    assert allowed.attributions == {"alphavantage": "Alpha Vantage.", "synthetic": "Synthetic."}
    assert allowed.watermarks == {"alphavantage": "AV licensed"}
    # report: no attribution, no watermark for alphavantage; api: alphavantage is metadata-only.
    report = registry.decide(rights, ["alphavantage"], "report", {"av-premium"})
    assert (report.attributions, report.watermarks) == ({}, {})
    api = registry.decide(rights, ["alphavantage", "fred"], "api", set())
    assert api.allowed and api.excluded == ("alphavantage",) and api.attributions == {"fred": "Source: FRED."}
    unknown = registry.decide(rights, ["unknown"], "csv", set())
    assert not unknown.allowed and "providers not in the rights registry: unknown" in unknown.refusal()
    assert registry.excluded_providers(rights, ["acme", "fred", "zzz"], "csv") == {"acme"}


def test_entitlements_from_the_environment_must_be_registry_licences() -> None:
    rights = registry.parse(GOOD)
    assert registry.entitlements_from_env(rights, {"WEALTH_ENTITLEMENTS": " av-premium , vendor-lic"}) == {
        "av-premium",
        "vendor-lic",
    }
    assert registry.entitlements_from_env(rights, {}) == set()
    with pytest.raises(
        registry.RegistryError,
        match="WEALTH_ENTITLEMENTS: unknown licence 'av-premum'; the rights "
        "registry names av-premium, vendor-lic",
    ):
        registry.entitlements_from_env(rights, {"WEALTH_ENTITLEMENTS": "av-premum"})


def test_landing_files_belong_to_the_vendor_their_path_names() -> None:
    rights = registry.parse(GOOD)
    assert rights.landing_vendor("bars/2024-07-09T2200Z-acme.csv") == "acme"
    assert rights.landing_vendor("bars/2024-07-09T2200Z-other.csv") == "vendor"
    without_default = registry.parse(GOOD.replace("  vendor: {kind: landing", "  vendorz: {kind: landing"))
    with pytest.raises(registry.RegistryError, match="matches no vendor's `files`"):
        without_default.landing_vendor("bars/x.csv")


def test_provider_sources_per_session(tmp_path: Path) -> None:
    rights = registry.parse(GOOD)
    start, end = dt.date(2024, 1, 2), dt.date(2024, 1, 5)
    synthetic = SyntheticMarket(universe_size=5)
    assert lineage.provider_sources(synthetic, "bars", start, end, rights) == {
        d: ("synthetic",) for d in calendars.weekdays(start, end)
    }
    # Landing zone: one file per vendor, on different days; other datasets from the reference provider.
    (tmp_path / "fx_rates").mkdir()
    (tmp_path / "fx_rates" / "2024-01-03T2200Z-acme.csv").write_text(
        "session_date,base_currency,quote_currency,rate\n2024-01-03,USD,CAD,1.33\n", encoding="utf-8"
    )
    (tmp_path / "fx_rates" / "2024-01-04T2200Z-other.csv").write_text(
        "session_date,base_currency,quote_currency,rate\n2024-01-03,USD,EUR,0.91\n2024-01-04,USD,CAD,1.34\n",
        encoding="utf-8",
    )
    vendor = VendorFileProvider(LandingZone.from_uri(str(tmp_path)), synthetic)
    assert lineage.provider_sources(vendor, "fx_rates", start, end, rights) == {
        dt.date(2024, 1, 2): (),
        dt.date(2024, 1, 3): ("acme", "vendor"),
        dt.date(2024, 1, 4): ("vendor",),
        dt.date(2024, 1, 5): (),
    }
    assert set(lineage.provider_sources(vendor, "factor_returns", start, end, rights).values()) == {
        ("synthetic",)
    }


def test_a_mart_traces_to_the_warehouse_tables_dbt_builds_it_from() -> None:
    from wealth_pipeline.defs.marts.project import dbt_project, prepare_manifest

    manifest = prepare_manifest(dbt_project)
    assert set(lineage.mart_inputs(manifest, "security_daily")) == {
        "market.bars_daily",
        "ref.securities",
        "analytics.indicators_daily",
        "analytics.factor_exposures",
    }
    assert {"portfolio.valuations", "portfolio.portfolio_metrics"} <= set(
        lineage.mart_inputs(manifest, "portfolio_performance")
    )
    with pytest.raises(KeyError, match=r"unknown mart 'nope': expected one of .*security_daily"):
        lineage.mart_inputs(manifest, "nope")


@pytest.mark.parametrize(
    "text",
    [
        "1=1 OR 1=1",
        "symbol; DROP TABLE market.bars_daily; --=1",
        "symbol",
        "Symbol=A",
        "symbol ~ 'A'",
        "a b=1",
        "",
    ],
)
def test_hostile_or_malformed_where_is_refused(text: str) -> None:
    with pytest.raises(export.ExportError, match=r"^--where .*expected COLUMN OP VALUE"):
        export.parse_where([text])


def test_where_values_stay_values() -> None:
    assert export.parse_where(
        ["symbol=AAA' OR '1'='1", "symbol=1) OR (1=1", "session_date >= 2024-01-02", "name='a b'"]
    ) == [
        export.Condition("symbol", "=", "AAA' OR '1'='1"),
        export.Condition("symbol", "=", "1) OR (1=1"),
        export.Condition("session_date", ">=", "2024-01-02"),
        export.Condition("name", "=", "a b"),
    ]


def test_http_lineage_names_the_adapter_of_each_dataset(tmp_path: Path) -> None:
    synthetic = SyntheticMarket(universe_size=5)
    keys = {"WEALTH_HTTP_BARS_API_KEY": "k", "WEALTH_HTTP_FX_API_KEY": "k"}
    start, end = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    rights = registry.load()
    expected = {
        "bars": ("alphavantage",),
        "fx_rates": ("fred",),
        "factor_returns": ("fred", "synthetic"),
        "benchmark_returns": ("synthetic",),
        "corporate_actions": ("synthetic",),
    }
    with_supplement = HttpMarketData.from_env(
        synthetic.symbol_master(), env=keys, supplement=synthetic, state_dir=tmp_path
    )
    alone = HttpMarketData.from_env(
        synthetic.symbol_master(),
        env=keys,
        state_dir=tmp_path,
        benchmark_symbol=synthetic.symbol_master()["symbol"][0],
    )
    try:
        for dataset, sources in expected.items():
            assert set(lineage.provider_sources(with_supplement, dataset, start, end, rights).values()) == {
                sources
            }
        # Without a supplement: no corporate actions source; the benchmark from the bars vendor.
        assert set(lineage.provider_sources(alone, "corporate_actions", start, end, rights).values()) == {()}
        assert set(lineage.provider_sources(alone, "benchmark_returns", start, end, rights).values()) == {
            ("alphavantage",)
        }
        assert set(lineage.provider_sources(alone, "factor_returns", start, end, rights).values()) == {
            ("fred",)
        }
    finally:
        with_supplement.close()
        alone.close()
