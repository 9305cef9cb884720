"""Vendor factor, risk-free and benchmark files (issue 21, item 5): parsing, refusal, the landing provider."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from wealth_pipeline.providers import reference_files
from wealth_pipeline.providers.landing import LandingZone, VendorFileProvider
from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline.providers.vendor_files import VendorFileError

D = dt.date


def _drop(root: Path, key: str, text: str) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_vendor_series_replace_the_reference_ones(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    _drop(
        landing,
        "factor_returns/2024-07-01.csv",
        "session_date,factor,value\n"
        "2024-07-01,market,0.0012\n2024-07-01,size,-0.0003\n2024-07-01,rf,0.0002\n2024-07-02,market,0.004\n",
    )
    _drop(landing, "factor_returns/2024-07-02.csv", "session_date,factor,value\n2024-07-02,market,0.005\n")
    _drop(landing, "risk_free/tbill.csv", "session_date,annual_rate\n2024-07-01,0.0504\n")
    _drop(
        landing,
        "benchmark_returns/spx.csv",
        "session_date,benchmark,level,return\n2024-07-01,SPX,5475.09,0.0027\n2024-07-02,SPX,5509.01,0.0062\n",
    )
    provider = VendorFileProvider(LandingZone.from_uri(str(landing)), SyntheticMarket(universe_size=4))
    factors = provider.factor_returns(D(2024, 7, 1), D(2024, 7, 31))
    rows = factors.rows()
    assert [r[:2] for r in rows] == [
        (D(2024, 7, 1), "market"),
        (D(2024, 7, 1), "rf"),
        (D(2024, 7, 1), "size"),
        (D(2024, 7, 2), "market"),
    ]
    # the T-bill file replaces the factor file's rf; the later factor file supersedes the earlier one
    assert [r[2] for r in rows] == [0.0012, pytest.approx(0.0504 / 252, rel=1e-15), -0.0003, 0.005]
    bench = provider.benchmark_returns(D(2024, 7, 2), D(2024, 7, 2))
    assert bench.rows() == [(D(2024, 7, 2), "SPX", 5509.01, 0.0062)]
    empty = VendorFileProvider(LandingZone.from_uri(str(tmp_path / "none")), SyntheticMarket(universe_size=4))
    reference = SyntheticMarket(universe_size=4).factor_returns(D(2024, 7, 1), D(2024, 7, 2))
    assert empty.factor_returns(D(2024, 7, 1), D(2024, 7, 2)).equals(reference)  # no files: the reference's


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (
            reference_files.factor_returns_from_csv,
            "session_date,factor,value\n2024-07-01,market,1.2\n",
            "row 2, field value: '1.2': expected a daily simple return as a decimal within +-0.5 (0.0012 for 0.12%)",
        ),
        (
            reference_files.factor_returns_from_csv,
            "session_date,factor,value\n2024-07-01,hml,0.001\n",
            "row 2, field factor: 'hml': expected one of market, size, value, momentum, rf",
        ),
        (
            reference_files.factor_returns_from_csv,
            "session_date,factor,value\n2024-07-06,market,0.001\n",
            "row 2, field session_date: 2024-07-06 is a weekend",
        ),
        (
            reference_files.factor_returns_from_csv,
            "session_date,factor,value\n2024-07-01,rf,0.001\n2024-07-01,rf,0.002\n",
            "row 3: session_date 2024-07-01, factor rf appears twice",
        ),
        (
            reference_files.risk_free_from_csv,
            "session_date,annual_rate\n2024-07-01,5.25\n",
            "row 2, field annual_rate: '5.25': expected an annual rate as a decimal",
        ),
        (
            reference_files.benchmark_returns_from_csv,
            "session_date,benchmark,level\n2024-07-01,SPX,5475\n",
            "missing required column(s) ['return']",
        ),
        (
            reference_files.benchmark_returns_from_csv,
            "session_date,benchmark,level,return\n2024-07-01,SPX,-1,0.01\n",
            "row 2, field level: '-1': expected a positive index level",
        ),
    ],
)
def test_a_bad_row_refuses_the_file_naming_row_and_field(parse, text: str, message: str) -> None:
    with pytest.raises(VendorFileError) as caught:
        parse(text.encode(), "landing/x/file.csv")
    assert "landing/x/file.csv" in str(caught.value) and message in str(caught.value)


def test_merge_keeps_the_latest_file_per_key() -> None:
    first = pl.DataFrame({"session_date": [D(2024, 7, 1)], "factor": ["market"], "value": [0.1]})
    second = pl.DataFrame({"session_date": [D(2024, 7, 1)], "factor": ["market"], "value": [0.2]})
    merged = reference_files.merge(
        [first, second],
        ["session_date", "factor"],
        {"session_date": pl.Date(), "factor": pl.Utf8(), "value": pl.Float64()},
    )
    assert merged.rows() == [(D(2024, 7, 1), "market", 0.2)]
