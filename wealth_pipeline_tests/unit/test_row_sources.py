"""Per-row source lineage (issue 22): what each delivered row says about its provider, and the fill of
raw rows written before rows carried one."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from wealth_pipeline.core import bars as bar_compute
from wealth_pipeline.core.schemas import BARS_SCHEMA, FACTOR_RETURNS_SCHEMA, with_source
from wealth_pipeline.providers.landing import LandingZone, VendorFileProvider
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline.rights import lineage, registry

D1, D2, D3 = dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3)
RIGHTS = registry.parse(
    """
providers:
  synthetic: {kind: synthetic, policy: allowed, attribution: "Synthetic."}
  vendor: {kind: landing, policy: allowed, attribution: "Landing vendor."}
  acme: {kind: landing, policy: allowed, attribution: "ACME.", files: ["**/*-acme.*", "acme/**"]}
""",
    "test registry",
)
HEADER = "symbol,session_date,open,high,low,close,volume,currency\n"


def _landing(tmp_path: Path) -> VendorFileProvider:
    (tmp_path / "bars").mkdir()
    (tmp_path / "bars" / "2024-07-02T2200Z-acme.csv").write_text(
        HEADER + "AAPL,2024-07-01,100,102,99,101,1000,USD\nAAPL,2024-07-02,101,103,100,102,1100,USD\n"
        "MSFT,2024-07-02,400,402,399,401,50,USD\n",
        encoding="utf-8",
    )
    # A later file from another vendor: its AAPL 07-02 supersedes acme's, its 07-03 is new.
    (tmp_path / "bars" / "2024-07-03T2200Z-other.csv").write_text(
        HEADER + "AAPL,2024-07-02,101,104,100,103.5,1200,USD\nAAPL,2024-07-03,103,105,102,104,900,USD\n",
        encoding="utf-8",
    )
    (tmp_path / "factor_returns").mkdir()
    (tmp_path / "factor_returns" / "2024-07-03-acme.csv").write_text(
        "session_date,factor,value\n2024-07-01,market,0.01\n2024-07-01,size,0.002\n", encoding="utf-8"
    )
    (tmp_path / "risk_free").mkdir()
    (tmp_path / "risk_free" / "2024-07-03-tbill.csv").write_text(
        "session_date,annual_rate\n2024-07-01,0.05\n", encoding="utf-8"
    )
    return VendorFileProvider(LandingZone.from_uri(str(tmp_path)), SyntheticMarket(universe_size=12))


def test_landing_rows_carry_the_vendor_of_their_file_the_later_file_winning(tmp_path: Path) -> None:
    provider = _landing(tmp_path)
    rows = lineage.delivered(provider, "bars", D1, D3, RIGHTS)
    assert rows.columns == list(with_source(BARS_SCHEMA))
    assert rows.sort("symbol", "session_date").select("symbol", "session_date", "close", "source").rows() == [
        ("AAPL", D1, 101.0, "acme"),
        ("AAPL", D2, 103.5, "vendor"),  # the later (default vendor's) file superseded acme's row
        ("AAPL", D3, 104.0, "vendor"),
        ("MSFT", D2, 401.0, "acme"),
    ]
    # The same rows as the provider's own method delivers.
    assert rows.drop("source").sort("symbol", "session_date").equals(
        provider.bars(D1, D3).sort("symbol", "session_date")
    )
    # Landing factor and risk-free files: per file too; without any, the reference provider's.
    factors = lineage.delivered(provider, "factor_returns", D1, D3, RIGHTS)
    assert dict(factors.select("factor", "source").iter_rows()) == {
        "market": "acme", "size": "acme", "rf": "vendor",
    }
    assert lineage.provider_sources(provider, "factor_returns", D1, D1, RIGHTS) == {D1: ("acme", "vendor")}
    benchmark = lineage.delivered(provider, "benchmark_returns", D1, D3, RIGHTS)
    assert benchmark.height and set(benchmark["source"]) == {"synthetic"}


def test_other_providers_tag_every_row_with_their_name() -> None:
    market = SyntheticMarket(universe_size=12)
    for dataset in ("bars", "corporate_actions", "fx_rates", "factor_returns", "benchmark_returns"):
        rows = lineage.delivered(market, dataset, dt.date(2024, 1, 2), dt.date(2024, 1, 31), RIGHTS)
        assert rows.height and rows["source"].unique().to_list() == ["synthetic"], dataset
        assert rows.drop("source").equals(getattr(market, dataset)(dt.date(2024, 1, 2), dt.date(2024, 1, 31)))


def test_rows_without_a_source_take_a_single_recorded_provider_else_unknown() -> None:
    frame = pl.DataFrame(
        {
            "session_date": [D1, D1, D2, D3, D3],
            "factor": ["market", "rf", "market", "market", "rf"],
            "value": [0.1, 0.2, 0.3, 0.4, 0.5],
            "source": [None, "fred", None, None, None],
        },
        schema=with_source(FACTOR_RETURNS_SCHEMA),
    )
    recorded = {D1: ("synthetic",), D2: ("fred", "synthetic"), D3: ("unknown",)}
    filled, summary = lineage.fill_sources(frame, "session_date", recorded)
    assert filled["source"].to_list() == ["synthetic", "fred", "unknown", "unknown", "unknown"]
    assert summary == {
        "rows_without_source": 4, "from_lineage": 1, "unknown": 3, "unknown_partitions": ["2024-07-02", "2024-07-03"],
    }
    # A frame without the column at all (a pre-lineage raw version read alone) is filled the same way.
    bare, _ = lineage.fill_sources(frame.drop("source"), "session_date", {D1: ("synthetic",)})
    assert bare["source"].to_list() == ["synthetic", "synthetic", "unknown", "unknown", "unknown"]
    complete, nothing = lineage.fill_sources(filled, "session_date", {})
    assert complete.equals(filled) and nothing["rows_without_source"] == 0


def test_processed_bars_keep_the_source_of_their_raw_row() -> None:
    market = SyntheticMarket(universe_size=12)
    start, end = dt.date(2024, 1, 2), dt.date(2024, 1, 5)
    raw = market.bars(start, end).with_columns(
        pl.when(pl.col("symbol") == "AAPL").then(pl.lit("acme")).otherwise(pl.lit("vendor")).alias("source")
    )
    built = bar_compute.build_bars(raw, market.corporate_actions(start, end), market.symbol_master(), start, end)
    assert built.frame.height
    by_symbol = dict(built.frame.group_by("symbol").agg(pl.col("source").unique()).iter_rows())
    assert by_symbol.pop("AAPL") == ["acme"] and all(v == ["vendor"] for v in by_symbol.values())
    with pytest.raises(ValueError, match="raw_bars has no source column and no source was given"):
        bar_compute.build_bars(raw.drop("source"), market.corporate_actions(start, end), market.symbol_master(), start, end)
