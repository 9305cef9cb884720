"""Identifier check digits against hand-computed cases and real identifiers (issue 21)."""

from __future__ import annotations

import datetime as dt

import pytest

from wealth_pipeline.core import identifiers
from wealth_pipeline.providers import securities_file
from wealth_pipeline.providers.vendor_files import VendorFileError


def test_isin_check_digit_by_hand() -> None:
    # US037833100 -> U=30 S=28 -> 3028037833100. From the right: 0 0 1 3 3 8 7 3 0 8 2 0 3; the 1st, 3rd,
    # ... are doubled: 0 1 3 7 0 2 3 -> 0 2 6 14 0 4 6 -> digit sum 23; the others 0 3 8 3 8 0 sum 22.
    # 45 -> check digit (10 - 45 % 10) % 10 = 5.
    digits = "3028037833100"
    total = sum(
        (d * 2 // 10 + d * 2 % 10) if i % 2 == 0 else d
        for i, d in enumerate(int(c) for c in reversed(digits))
    )
    assert total == 45
    assert identifiers.isin_check_digit("US037833100") == 5


@pytest.mark.parametrize(
    ("isin", "cusip"),
    [
        ("US0378331005", "037833100"),  # Apple
        ("US5949181045", "594918104"),  # Microsoft
        ("US02079K3059", "02079K305"),  # Alphabet class A
        ("CA8911605092", "891160509"),  # Toronto-Dominion Bank
    ],
)
def test_real_isins_are_valid_and_embed_their_cusip(isin: str, cusip: str) -> None:
    assert identifiers.isin_problem(isin) is None
    assert identifiers.cusip_from_isin(isin) == cusip
    assert identifiers.cusip_problem(cusip) is None


def test_cusip_check_digit_by_hand() -> None:
    # 03783310: values 0 3 7 8 3 3 1 0, every second doubled: 0 6 7 16 3 6 1 0 -> digit sum 0+6+7+1+6+3+6+1+0 = 30
    assert identifiers.cusip_check_digit("03783310") == 0
    # 02079K30: 0 2 0 7 9 K=20 3 0, 2nd/4th/6th/8th doubled: 0 4 0 14 9 40 3 0
    # digit sums: 0 + 4 + 0 + (1+4) + 9 + (4+0) + 3 + 0 = 25 -> check (10 - 5) % 10 = 5
    assert identifiers.cusip_check_digit("02079K30") == 5


def test_figi_check_digits_of_real_figis() -> None:
    assert identifiers.figi_problem("BBG000B9XRY4") is None  # Apple Inc. common stock (composite)
    assert identifiers.figi_problem("BBG000BPH459") is None  # Microsoft
    assert "check digit is 5" in identifiers.figi_problem("BBG000B9XRY5")
    assert "consonants" in identifiers.figi_problem("BSG000B9XRY4")  # BS is a reserved prefix


def test_bad_identifiers_name_what_is_wrong() -> None:
    assert identifiers.isin_problem("US0378331006") == (
        "ISIN check digit is 6, the Luhn check digit of US037833100 is 5"
    )
    assert "2 letters" in identifiers.isin_problem("0378331005")
    assert (
        identifiers.cusip_problem("037833101") == "CUSIP check digit is 1, the check digit of 03783310 is 0"
    )
    assert identifiers.cusip_from_isin("US0378331006") is None
    assert identifiers.cusip_from_isin("DE0007164600") is None  # SAP: valid ISIN, no CUSIP inside
    assert identifiers.isin_problem("DE0007164600") is None


def test_security_id_is_stable_and_distinct() -> None:
    apple = identifiers.security_id(identifiers.origin_key("US0378331005", "XNAS", "AAPL"))
    assert apple == identifiers.security_id("US0378331005")
    assert apple != identifiers.security_id(identifiers.origin_key("US5949181045", "XNAS", "MSFT"))
    # no valid ISIN: MIC:symbol of the first listing
    assert identifiers.origin_key("US0378331006", "XNAS", "AAPL") == "XNAS:AAPL"
    assert len(apple) == 12 and apple.startswith("S")
    with pytest.raises(ValueError, match="origin key"):
        identifiers.security_id("")


CSV_HEADER = "symbol,name,exchange,currency,asset_class,sector,isin,cusip,figi,valid_from,valid_to\n"


def test_vendor_symbol_master_derives_identity_and_keeps_a_ticker_change_on_one_id() -> None:
    data = (
        CSV_HEADER
        + "AAPL,Apple Inc.,NASDAQ,USD,equity,Information Technology,US0378331005,,BBG000B9XRY4,,\n"
        + "FB,Meta Platforms,NASDAQ,USD,equity,Communication Services,US30303M1027,,,,2022-06-09\n"
        + "META,Meta Platforms,NASDAQ,USD,equity,Communication Services,US30303M1027,,,2022-06-09,\n"
    ).encode()
    frame = securities_file.symbol_master_from_csv(data, "landing/symbol_master/2024.csv")
    rows = {r["symbol"]: r for r in frame.iter_rows(named=True)}
    assert (rows["AAPL"]["cusip"], rows["AAPL"]["mic"], rows["AAPL"]["country"]) == (
        "037833100",
        "XNAS",
        "US",
    )
    assert rows["AAPL"]["security_id"] == identifiers.security_id("US0378331005")
    assert rows["FB"]["security_id"] == rows["META"]["security_id"]
    assert (rows["FB"]["valid_to"], rows["META"]["valid_from"]) == (dt.date(2022, 6, 9), dt.date(2022, 6, 9))
    assert not frame["is_synthetic"].any()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "AAPL,Apple,NASDAQ,USD,equity,IT,US0378331006,,,,",
            "row 1, field isin: 'US0378331006': ISIN check digit is 6, the Luhn check digit of US037833100 is 5",
        ),
        (
            "AAPL,Apple,NASDAQ,USD,equity,IT,US0378331005,037833101,,,",
            "row 1, field cusip: '037833101': CUSIP check digit is 1, the check digit of 03783310 is 0",
        ),
        (
            "AAPL,Apple,NASDAQ,USD,equity,IT,US0378331005,594918104,,,",
            "row 1, field cusip: '594918104': CUSIP does not match the one ISIN US0378331005 embeds (037833100)",
        ),
        (
            "AAPL,Apple,NASDAQ,USD,equity,IT,,,BBG000B9XRY5,,",
            "row 1, field figi: 'BBG000B9XRY5': FIGI check digit is 5",
        ),
        (
            "AAPL,Apple,NASDAQ,USD,equity,IT,,,,2024-13-01,",
            "row 1, field valid_from: '2024-13-01' is not a date",
        ),
    ],
)
def test_vendor_symbol_master_with_a_bad_identifier_is_refused_naming_file_row_and_field(
    row: str, message: str
) -> None:
    with pytest.raises(VendorFileError) as caught:
        securities_file.symbol_master_from_csv(
            (CSV_HEADER + row + "\n").encode(), "landing/symbol_master/bad.csv"
        )
    assert "landing/symbol_master/bad.csv" in str(caught.value) and message in str(caught.value)
