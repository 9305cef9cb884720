"""Vendor landing-zone files: file-level errors, row-level rejects, CSV/parquet parity, duplicates.

Expected rejects are written by hand from the documented layouts (docs/vendor-file-layouts.md):
CSV row numbers are file line numbers (header = line 1), parquet row numbers are 1-based indexes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import re

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from wealth_pipeline.core import calendars
from wealth_pipeline.core.validation import INTEGER_RANGE_REASON
from wealth_pipeline.providers.base import BARS_SCHEMA, CORPORATE_ACTIONS_SCHEMA, FX_RATES_SCHEMA
from wealth_pipeline.providers.vendor_files import (
    VENDOR_REJECT_SCHEMA,
    ParsedFile,
    VendorFileError,
    infer_dataset,
    parse_vendor_file,
)

KNOWN = {"AAPL": "NASDAQ", "MSFT": "NASDAQ", "JPM": "NYSE", "TD.TO": "TSX"}
BARS_HEADER = "symbol,session_date,open,high,low,close,volume,currency"
CA_HEADER = "symbol,ex_date,action_type,ratio,amount,currency"
FX_HEADER = "session_date,base_currency,quote_currency,rate"
GOOD_BAR = "AAPL,2024-01-05,10.0,11.0,9.5,10.5,1000,USD"
GOOD_CA = "MSFT,2024-02-14,dividend,,0.75,USD"
GOOD_FX = "2024-01-05,USD,CAD,1.35"
D = dt.date


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _parse(name: str, data: bytes, **kwargs) -> ParsedFile:
    kwargs.setdefault("known_symbols", KNOWN)
    kwargs.setdefault("is_session", calendars.is_session)
    return parse_vendor_file(name, data, **kwargs)


def _reject_map(parsed: ParsedFile) -> dict[tuple[int, str], str]:
    return {(r["row_number"], r["field"]): r["reason"] for r in parsed.rejects.iter_rows(named=True)}


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


# --- good files ------------------------------------------------------------------------------


def test_good_csv_rows_conform_exactly_to_the_schema() -> None:
    data = _csv(BARS_HEADER, GOOD_BAR, "TD.TO,2024-01-05, 80 ,81,79,80.5,0,CAD")
    parsed = _parse("bars/2024-01-05.csv", data)
    assert parsed.dataset == "bars"
    assert parsed.file_name == "bars/2024-01-05.csv"
    assert parsed.good.schema == pl.Schema(BARS_SCHEMA)
    expected = pl.DataFrame(
        [
            ("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.5, 10.5, 1000, "USD"),
            ("TD.TO", D(2024, 1, 5), 80.0, 81.0, 79.0, 80.5, 0, "CAD"),
        ],
        schema=BARS_SCHEMA,
        orient="row",
    )
    assert_frame_equal(parsed.good, expected)
    assert parsed.rejects.schema == pl.Schema(VENDOR_REJECT_SCHEMA)
    assert parsed.rejects.is_empty()
    assert parsed.warnings == []
    assert parsed.dates() == [D(2024, 1, 5)]


def test_content_hash_is_sha256_of_the_exact_bytes() -> None:
    data = _csv(BARS_HEADER, GOOD_BAR)
    parsed = _parse("bars/a.csv", data)
    assert parsed.content_sha256 == hashlib.sha256(data).hexdigest()
    crlf = data.replace(b"\n", b"\r\n")  # same rows, different bytes
    other = _parse("bars/a.csv", crlf)
    assert other.content_sha256 == hashlib.sha256(crlf).hexdigest() != parsed.content_sha256
    assert_frame_equal(other.good, parsed.good)


def test_corporate_actions_and_fx_files_parse() -> None:
    actions = _parse("corporate_actions/x.csv", _csv(CA_HEADER, GOOD_CA, "AAPL,2020-08-31,split,4,,"))
    assert actions.good.schema == pl.Schema(CORPORATE_ACTIONS_SCHEMA)
    assert actions.good.rows() == [
        ("MSFT", D(2024, 2, 14), "dividend", None, 0.75, "USD", "regular"),  # no distribution_type column:
        ("AAPL", D(2020, 8, 31), "split", 4.0, None, None, "split"),  # each action's default
    ]
    assert actions.dates() == [D(2020, 8, 31), D(2024, 2, 14)]
    fx = _parse("fx_rates/x.csv", _csv(FX_HEADER, GOOD_FX, "2024-07-04,USD,CAD,1.36"))
    assert fx.good.schema == pl.Schema(FX_RATES_SCHEMA)
    assert fx.good.rows() == [(D(2024, 1, 5), "USD", "CAD", 1.35), (D(2024, 7, 4), "USD", "CAD", 1.36)]
    assert fx.rejects.is_empty()  # July 4 is a NYSE holiday but an FX weekday


@pytest.mark.parametrize(
    ("name", "dataset"),
    [
        ("bars/2024-01.csv", "bars"),
        ("landing/vendor_a/fx_rates/2024/01.parquet", "fx_rates"),
        ("corporate_actions/any name.CSV", "corporate_actions"),
        ("fx_rates.csv", "fx_rates"),
        ("corporate_actions_2024-01.parquet", "corporate_actions"),
        ("bars-daily.csv", "bars"),
    ],
)
def test_dataset_is_inferred_from_folder_or_name(name: str, dataset: str) -> None:
    assert infer_dataset(name) == dataset


def test_unknown_dataset_and_format_are_clear_errors() -> None:
    with pytest.raises(VendorFileError, match="cannot tell the dataset") as info:
        parse_vendor_file("quotes/2024.csv", _csv(BARS_HEADER, GOOD_BAR))
    assert info.value.file_name == "quotes/2024.csv"
    assert "quotes/2024.csv" in str(info.value)
    with pytest.raises(VendorFileError, match="unknown dataset 'quotes'"):
        parse_vendor_file("x.csv", _csv(BARS_HEADER, GOOD_BAR), dataset="quotes")
    with pytest.raises(VendorFileError) as unknown:
        parse_vendor_file("bars/x.xlsx", b"whatever")
    assert (
        str(unknown.value)
        == "vendor file 'bars/x.xlsx': unsupported file type 'xlsx'; expected .csv, .csv.gz or .parquet"
    )
    for name, kind in (("bars/x.parquet.gz", "parquet.gz"), ("bars/x", "(none)"), ("bars/x.gz", "gz")):
        with pytest.raises(VendorFileError, match=rf"unsupported file type '{re.escape(kind)}'"):
            parse_vendor_file(name, b"whatever")
    # An explicit dataset wins over the path.
    assert parse_vendor_file("drop/x.csv", _csv(BARS_HEADER, GOOD_BAR), dataset="bars").good.height == 1


# --- file-level failures ---------------------------------------------------------------------


def test_empty_file_is_a_file_error() -> None:
    with pytest.raises(VendorFileError, match=r"empty file \(0 bytes\)") as info:
        _parse("bars/empty.csv", b"")
    assert info.value.file_name == "bars/empty.csv"
    with pytest.raises(VendorFileError, match="no header row"):
        _parse("bars/blank.csv", b"\n  \n")


def test_header_only_file_gives_zero_rows_and_a_warning() -> None:
    parsed = _parse("bars/none.csv", _csv(BARS_HEADER))
    assert parsed.good.schema == pl.Schema(BARS_SCHEMA)
    assert parsed.good.is_empty()
    assert parsed.rejects.is_empty()
    assert parsed.warnings == ["no data rows (header only)"]
    assert parsed.dates() == []


def test_non_utf8_bytes_name_offset_and_line() -> None:
    data = _csv(BARS_HEADER, GOOD_BAR).replace(b"\n", b"\nMSFT,2024-01-05,1,2,0.5,1,5,\xe9UR\n", 1)
    # (a Latin-1 "é" where the file should be UTF-8, on line 2)
    offset = data.index(b"\xe9")
    with pytest.raises(VendorFileError, match="not UTF-8") as info:
        _parse("bars/latin1.csv", data)
    assert f"byte 0xe9 at byte offset {offset} (line 2," in str(info.value)
    assert "bars/latin1.csv" in str(info.value)


def test_utf8_bom_is_accepted() -> None:
    parsed = _parse("bars/bom.csv", b"\xef\xbb\xbf" + _csv(BARS_HEADER, GOOD_BAR))
    assert parsed.good.height == 1


def test_missing_required_column_is_named() -> None:
    header = BARS_HEADER.replace(",close", "")
    with pytest.raises(VendorFileError, match=r"missing required column\(s\) 'close'") as info:
        _parse("bars/noclose.csv", _csv(header, "AAPL,2024-01-05,10,11,9.5,1000,USD"))
    assert info.value.file_name == "bars/noclose.csv"
    with pytest.raises(VendorFileError, match="missing required column"):
        _parse("fx_rates/x.parquet", _parquet(pl.DataFrame({"session_date": [D(2024, 1, 5)], "rate": [1.3]})))


def test_unterminated_quote_is_a_truncated_file() -> None:
    data = _csv(BARS_HEADER, GOOD_BAR) + b'MSFT,2024-01-05,1,2,0.5,1,5,"US'
    with pytest.raises(VendorFileError, match=r"truncated: unterminated quoted field .* line 3"):
        _parse("bars/cut.csv", data)


def test_short_last_row_is_a_truncated_file() -> None:
    data = _csv(BARS_HEADER, GOOD_BAR) + b"MSFT,2024-01-05,1,2"
    with pytest.raises(VendorFileError, match=r"truncated: the last row \(line 3\) has 4 of 8 fields"):
        _parse("bars/cut.csv", data)


def test_short_row_in_the_middle_is_a_row_reject() -> None:
    data = _csv(BARS_HEADER, GOOD_BAR, "MSFT,2024-01-05,1,2", "JPM,2024-01-05,10,11,9,10,1,USD,extra")
    data += _csv("MSFT,2024-01-08,10,11,9,10,1,USD")
    parsed = _parse("bars/ragged.csv", data)
    assert _reject_map(parsed) == {
        (3, "(row)"): "row has 4 fields, the header has 8",
        (4, "(row)"): "row has 9 fields, the header has 8",
    }
    assert parsed.rejects.filter(pl.col("row_number") == 3)["value"].to_list() == ["MSFT,2024-01-05,1,2"]
    assert parsed.good["symbol"].to_list() == ["AAPL", "MSFT"]


def test_truncated_and_unreadable_parquet() -> None:
    good = _parquet(
        pl.DataFrame(
            [("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.5, 10.5, 1000, "USD")], schema=BARS_SCHEMA, orient="row"
        )
    )
    assert _parse("bars/ok.parquet", good).good.height == 1
    with pytest.raises(VendorFileError, match="truncated parquet file") as info:
        _parse("bars/cut.parquet", good[: len(good) // 2])
    assert info.value.file_name == "bars/cut.parquet"
    corrupt = good[:4] + b"\x00" * (len(good) - 8) + good[-4:]
    with pytest.raises(VendorFileError, match="unreadable parquet"):
        _parse("bars/corrupt.parquet", corrupt)
    with pytest.raises(VendorFileError, match="not a parquet file"):
        _parse("bars/csv_named.parquet", _csv(BARS_HEADER, GOOD_BAR))


# --- row-level failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("AAPL,2024-01-08,10,11,9.5,abc,1000,USD", {"close": ("abc", "not a number")}),
        (
            "AAPL,2024-13-01,10,11,9.5,10.5,1000,USD",
            {"session_date": ("2024-13-01", "not an ISO date (YYYY-MM-DD)")},
        ),
        (
            "AAPL,01/08/2024,10,11,9.5,10.5,1000,USD",
            {"session_date": ("01/08/2024", "not an ISO date (YYYY-MM-DD)")},
        ),
        ("AAPL,2024-01-08,10,11,9.5,10.5,,USD", {"volume": ("", "required field is empty")}),
        (",2024-01-08,10,11,9.5,10.5,1000,USD", {"symbol": ("", "required field is empty")}),
        ("AAPL,2024-01-08,10,11,9.5,10.5,12.5,USD", {"volume": ("12.5", "not a whole number")}),
        ("AAPL,2024-01-08,10,11,9.5,10.5,1e30,USD", {"volume": ("1e30", INTEGER_RANGE_REASON)}),
        (
            "AAPL,2024-01-08,10,11,9.5,10.5,9223372036854775808,USD",
            {"volume": ("9223372036854775808", INTEGER_RANGE_REASON)},
        ),
        ("AAPL,2024-01-08,10,11,9.5,10.5,inf,USD", {"volume": ("inf", "not a finite number")}),
        ("AAPL,2024-01-08,10,11,9.5,10.5,-5,USD", {"volume": ("-5", "volume must be >= 0")}),
        ("AAPL,2024-01-08,10,11,0,10.5,1000,USD", {"low": ("0", "price must be > 0")}),
        (
            "AAPL,2024-01-08,1,0.9,1.0,1,1000,USD",
            {"high": ("0.9", "high is below low 1.0; high is below max(open 1.0, close 1.0)")},
        ),
        (
            "AAPL,2024-01-08,1,1.5,0.9,1.6,1000,USD",
            {"high": ("1.5", "high is below max(open 1.0, close 1.6)")},
        ),
        ("AAPL,2024-01-08,1,2,1.1,1.5,1000,USD", {"low": ("1.1", "low is above min(open 1.0, close 1.5)")}),
        (
            "AAPL,2024-07-04,10,11,9.5,10.5,1000,USD",
            {"session_date": ("2024-07-04", "not a trading session on NASDAQ")},
        ),
        (
            "TD.TO,2024-07-01,10,11,9.5,10.5,1000,CAD",
            {"session_date": ("2024-07-01", "not a trading session on TSX")},
        ),
        (
            "AAPL,2024-01-06,10,11,9.5,10.5,1000,USD",
            {"session_date": ("2024-01-06", "not a trading session on NASDAQ")},
        ),
        (
            "ZZZZ,2024-01-08,10,11,9.5,10.5,1000,USD",
            {"symbol": ("ZZZZ", "unknown symbol ZZZZ (not in the symbol master)")},
        ),
        (
            "AAPL,2024-01-08,10,11,9.5,10.5,1000,usd",
            {"currency": ("usd", "currency code usd is not 3 uppercase letters")},
        ),
        (
            "AAPL,2024-01-08,10,11,9.5,10.5,1000,US",
            {"currency": ("US", "currency code US is not 3 uppercase letters")},
        ),
    ],
)
def test_bad_bar_rows_are_rejected_and_good_rows_pass(
    line: str, expected: dict[str, tuple[str, str]]
) -> None:
    parsed = _parse("bars/mixed.csv", _csv(BARS_HEADER, GOOD_BAR, line, "MSFT,2024-01-08,10,11,9,10,1,USD"))
    assert parsed.good["symbol"].to_list() == ["AAPL", "MSFT"]
    assert parsed.rejects["file_name"].unique().to_list() == ["bars/mixed.csv"]
    assert parsed.rejects["dataset"].unique().to_list() == ["bars"]
    assert parsed.rejects["row_number"].unique().to_list() == [3]  # line 3 of the file
    got = {r["field"]: (r["value"], r["reason"]) for r in parsed.rejects.iter_rows(named=True)}
    assert got == expected


def test_tsx_listing_trades_on_a_us_holiday() -> None:
    parsed = _parse("bars/x.csv", _csv(BARS_HEADER, "TD.TO,2024-07-04,10,11,9.5,10.5,1000,CAD"))
    assert parsed.rejects.is_empty()
    assert parsed.good.height == 1


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("AAPL,2024-01-08,split,0,,", "ratio", "split ratio must be > 0"),
        ("AAPL,2024-01-08,split,-2,,", "ratio", "split ratio must be > 0"),
        ("AAPL,2024-01-08,split,,,", "ratio", "required field is empty"),
        ("MSFT,2024-01-08,dividend,,-0.1,USD", "amount", "dividend amount must be >= 0"),
        ("MSFT,2024-01-08,dividend,,0.5,", "currency", "required field is empty"),
        ("MSFT,2024-01-08,dividend,,0.5,Usd", "currency", "currency code Usd is not 3 uppercase letters"),
        (
            "MSFT,2024-01-08,merger,1,1,USD",
            "action_type",
            "unknown action_type merger; expected one of split, dividend",
        ),
        ("MSFT,2024-01-08,dividend,,x,USD", "amount", "not a number"),
        ("ZZZ,2024-01-08,split,2,,", "symbol", "unknown symbol ZZZ (not in the symbol master)"),
        ("MSFT,2024-01-13,dividend,,0.5,USD", "ex_date", "not a trading session on NASDAQ"),
    ],
)
def test_bad_corporate_action_rows(line: str, field: str, reason: str) -> None:
    parsed = _parse("corporate_actions/a.csv", _csv(CA_HEADER, GOOD_CA, line))
    assert parsed.good.height == 1
    assert _reject_map(parsed) == {(3, field): reason}
    assert parsed.rejects["dataset"].to_list() == ["corporate_actions"]


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("2024-01-08,USD,CAD,0.2", "rate", "rate outside the sane range [0.5, 3.0] for USD/CAD"),
        ("2024-01-08,USD,CAD,3.5", "rate", "rate outside the sane range [0.5, 3.0] for USD/CAD"),
        ("2024-01-08,USD,CAD,0", "rate", "rate must be > 0"),
        ("2024-01-08,USD,CAD,-1.3", "rate", "rate must be > 0"),
        ("2024-01-08,SEK,NOK,2000000", "rate", "rate outside the sane range [1e-6, 1000000.0] for SEK/NOK"),
        ("2024-01-08,USD,CAD,n/a", "rate", "not a number"),
        (
            "2024-01-06,USD,CAD,1.35",
            "session_date",
            "2024-01-06 is a weekend day; FX rates are expected on weekdays",
        ),
        ("2024-01-08,US$,CAD,1.35", "base_currency", "currency code US$ is not 3 uppercase letters"),
        ("2024-01-08,USD,cad,1.35", "quote_currency", "currency code cad is not 3 uppercase letters"),
    ],
)
def test_bad_fx_rows(line: str, field: str, reason: str) -> None:
    parsed = _parse("fx_rates/a.csv", _csv(FX_HEADER, GOOD_FX, line))
    assert parsed.good.rows() == [(D(2024, 1, 5), "USD", "CAD", 1.35)]
    assert _reject_map(parsed) == {(3, field): reason}


def test_row_with_several_bad_fields_gives_one_reject_per_field() -> None:
    parsed = _parse("bars/x.csv", _csv(BARS_HEADER, "ZZZ,2024-01-08,abc,11,9.5,10.5,-1,usd"))
    assert parsed.good.is_empty()
    assert parsed.rejects.select("row_number", "field").rows() == [
        (2, "symbol"),
        (2, "open"),
        (2, "volume"),
        (2, "currency"),
    ]
    assert parsed.rejected_rows == 1


# --- duplicates ------------------------------------------------------------------------------


def test_exact_duplicates_are_dropped_with_a_warning() -> None:
    data = _csv(
        BARS_HEADER,
        GOOD_BAR,
        "MSFT,2024-01-05,1,2,0.5,1,5,USD",
        "AAPL,2024-01-05,10,11.00,9.5,10.50,1000,USD",
    )
    parsed = _parse("bars/dup.csv", data)
    assert parsed.rejects.is_empty()
    assert parsed.good["symbol"].to_list() == ["AAPL", "MSFT"]
    assert parsed.warnings == [
        "dropped 1 exact duplicate row(s) (line 4); the first occurrence of each is kept"
    ]


def test_conflicting_duplicates_are_all_rejected() -> None:
    data = _csv(
        BARS_HEADER,
        GOOD_BAR,
        "MSFT,2024-01-05,1,2,0.5,1,5,USD",
        "AAPL,2024-01-05,10.0,11.0,9.5,10.6,1000,USD",
        "AAPL,2024-01-05,10.0,11.0,9.5,10.5,999,USD",
    )
    parsed = _parse("bars/conflict.csv", data)
    assert parsed.good["symbol"].to_list() == ["MSFT"]
    reason = "conflicting duplicate: rows 2, 4, 5 share key (AAPL, 2024-01-05) with different {}"
    assert parsed.rejects.select("row_number", "field", "value", "reason").rows() == [
        (2, "close", "10.5", reason.format("close")),
        (2, "volume", "1000", reason.format("volume")),
        (4, "close", "10.6", reason.format("close")),
        (4, "volume", "1000", reason.format("volume")),
        (5, "close", "10.5", reason.format("close")),
        (5, "volume", "999", reason.format("volume")),
    ]


# --- columns, lines, dates, formats ----------------------------------------------------------


def test_extra_columns_are_ignored_with_a_warning() -> None:
    plain = _parse("bars/a.csv", _csv(BARS_HEADER, GOOD_BAR))
    header = "source," + BARS_HEADER.replace(",close,", ",close,adj_close,")
    extra = _parse("bars/b.csv", _csv(header, "vendorx,AAPL,2024-01-05,10.0,11.0,9.5,10.5,10.4,1000,USD"))
    assert_frame_equal(extra.good, plain.good)
    assert extra.warnings == ["ignored extra column(s) 'source', 'adj_close'"]


def test_header_names_are_trimmed_and_case_insensitive() -> None:
    header = " Symbol ,SESSION_DATE,Open,High,Low,Close,Volume,Currency"
    parsed = _parse("bars/a.csv", _csv(header, GOOD_BAR))
    assert parsed.good.columns == list(BARS_SCHEMA)
    assert parsed.good.height == 1


def test_row_numbers_are_file_lines_even_with_multiline_quotes_and_blank_lines() -> None:
    header = BARS_HEADER + ",note"
    data = _csv(
        header,
        GOOD_BAR + ',"spans\ntwo lines"',  # lines 2-3
        "",  # line 4, blank: skipped
        "MSFT,2024-01-05,1,2,0.5,1,-5,USD,",  # line 5
    )
    parsed = _parse("bars/lines.csv", data)
    assert _reject_map(parsed) == {(5, "volume"): "volume must be >= 0"}
    assert parsed.good["symbol"].to_list() == ["AAPL"]


def test_file_spanning_many_dates_reports_them() -> None:
    days = calendars.sessions("NASDAQ", D(2024, 1, 2), D(2024, 3, 28))
    lines = [f"{s},{d.isoformat()},10,11,9,10,100,USD" for d in days for s in ("AAPL", "MSFT")]
    lines.append("AAPL,2024-04-01,10,11,9,-10,100,USD")  # rejected: its date is not reported
    parsed = _parse("bars/q1.csv", _csv(BARS_HEADER, *lines))
    assert parsed.good.height == 2 * len(days)
    assert parsed.dates() == days
    assert len(parsed.dates()) == 61
    summary = parsed.summary()
    assert summary.startswith("bars/q1.csv [bars, sha256 ")
    assert (
        f"{2 * len(days)} good row(s), 1 rejected row(s) (2 problem(s)), 61 date(s) 2024-01-02..2024-03-28"
        in summary
    )


def _sample_bars() -> pl.DataFrame:
    return pl.DataFrame(
        [
            ("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.5, 10.5, 1000, "USD"),
            ("AAPL", D(2024, 1, 8), 10.5, 12.25, 10.25, 12.0, 2000, "USD"),
            ("TD.TO", D(2024, 1, 8), 80.0, 81.0, 79.0, 80.5, 0, "CAD"),
            ("MSFT", D(2024, 1, 8), 370.0, 375.5, 369.0, 374.0, 123456789, "USD"),
            ("MSFT", D(2024, 1, 9), 374.0, 373.0, 369.0, 372.0, 5, "USD"),  # bad: high < open
        ],
        schema=BARS_SCHEMA,
        orient="row",
    )


def test_csv_and_parquet_of_the_same_content_parse_identically() -> None:
    frame = _sample_bars()
    csv_bytes = frame.write_csv().encode()
    from_csv = _parse("bars/s.csv", csv_bytes)
    typed = _parse("bars/s.parquet", _parquet(frame))
    as_text = _parse("bars/t.parquet", _parquet(frame.with_columns(pl.all().cast(pl.Utf8))))
    # Another writer: float volume, dictionary-encoded symbols, timestamps at midnight.
    table = frame.to_arrow()
    table = table.set_column(0, "symbol", table["symbol"].dictionary_encode())
    table = table.set_column(1, "session_date", table["session_date"].cast(pa.timestamp("ms")))
    table = table.set_column(6, "volume", table["volume"].cast(pa.float64()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    other_writer = _parse("bars/u.parquet", buffer.getvalue())
    assert from_csv.good.height == 4
    for parsed in (typed, as_text, other_writer):
        assert_frame_equal(parsed.good, from_csv.good)
        assert parsed.good.schema == pl.Schema(BARS_SCHEMA)
        # Same rejects, numbered by row index (parquet) instead of file line (CSV: index + 1).
        assert parsed.rejects.select("row_number", "field", "reason").rows() == [
            (5, "high", "high is below max(open 374.0, close 372.0)")
        ]
    assert from_csv.rejects.select("row_number", "field").rows() == [(6, "high")]


def test_parquet_type_errors_name_row_index_and_field() -> None:
    frame = pl.DataFrame(
        {
            "session_date": ["2024-01-05", "2024-01-08", "not a date"],
            "base_currency": ["USD", "USD", "USD"],
            "quote_currency": ["CAD", "CAD", "CAD"],
            "rate": [1.35, 1.36, 1.37],
        }
    )
    parsed = _parse("fx_rates/p.parquet", _parquet(frame))
    assert parsed.rejects.rows() == [
        ("fx_rates/p.parquet", 3, "session_date", "not a date", "not an ISO date (YYYY-MM-DD)", "fx_rates")
    ]
    assert parsed.dates() == [D(2024, 1, 5), D(2024, 1, 8)]


def test_session_check_needs_a_symbol_master() -> None:
    parsed = parse_vendor_file("bars/x.csv", _csv(BARS_HEADER, GOOD_BAR), is_session=calendars.is_session)
    assert parsed.good.height == 1
    assert parsed.warnings == ["session_date not checked against exchange calendars: no symbol master given"]


def test_parquet_column_of_a_non_scalar_type_is_a_file_error_and_booleans_are_not_numbers() -> None:
    frame = pl.DataFrame(
        {
            "session_date": [D(2024, 1, 5)],
            "base_currency": ["USD"],
            "quote_currency": ["CAD"],
            "rate": [[1.3]],
        }
    )
    with pytest.raises(VendorFileError, match="column 'rate' has type List"):
        _parse("fx_rates/l.parquet", _parquet(frame))
    parsed = _parse("fx_rates/b.parquet", _parquet(frame.with_columns(rate=pl.lit(True))))
    assert _reject_map(parsed) == {(1, "rate"): "not a number (Boolean)"}


def test_malformed_quoting_is_a_file_error_naming_the_line() -> None:
    data = _csv(BARS_HEADER, GOOD_BAR, 'MSFT,2024-01-05,1,2,0.5,1,5,"US"D')
    with pytest.raises(VendorFileError, match="malformed CSV in the row starting at line 3"):
        _parse("bars/quotes.csv", data)


# --- several distributions on one ex-date (issue 14) ----------------------------------------------


def test_two_distributions_on_one_ex_date_reach_the_adjustment_factor(tmp_path) -> None:
    """MSFT 2004-11-15: a 3.00 special and a 0.08 regular dividend, through landing zone and factors."""
    from wealth_pipeline.core import adjustments
    from wealth_pipeline.providers.landing import LandingZone, VendorFileProvider

    data = _csv(
        CA_HEADER + ",distribution_type",
        "MSFT,2004-11-15,dividend,,3.00,USD,special",
        "MSFT,2004-11-15,dividend,,0.08,USD,regular",
    )
    parsed = _parse("corporate_actions/msft.csv", data, known_symbols={"MSFT": "NASDAQ"})
    assert parsed.rejects.is_empty()
    assert parsed.good.select("distribution_type", "amount").rows() == [("special", 3.00), ("regular", 0.08)]
    # Without distribution_type both are "regular": a conflict, nothing usable (the symptom).
    untyped = _csv(CA_HEADER, "MSFT,2004-11-15,dividend,,3.00,USD", "MSFT,2004-11-15,dividend,,0.08,USD")
    same_without_type = _parse("corporate_actions/msft.csv", untyped)
    assert same_without_type.good.is_empty()
    assert set(same_without_type.rejects["reason"]) == {
        "conflicting duplicate: rows 2, 3 share key (MSFT, 2004-11-15, dividend, regular) with different amount"
    }

    # The landing zone keeps both (its supersession key includes distribution_type) ...
    (tmp_path / "corporate_actions").mkdir()
    (tmp_path / "corporate_actions" / "2004-11-15-msft.csv").write_bytes(data)

    class Reference:  # the symbol master only: the other reference datasets are not read here
        def symbol_master(self) -> pl.DataFrame:
            return pl.DataFrame({"symbol": ["MSFT"], "exchange": ["NASDAQ"]})

    provider = VendorFileProvider(LandingZone.from_uri(str(tmp_path)), Reference())
    rows = provider.corporate_actions(D(2004, 11, 15), D(2004, 11, 15))
    assert_frame_equal(rows, parsed.good)
    # ... and the day's factor combines them: 1 - (3.00 + 0.08) / the previous close (29.97, by hand).
    bars = pl.DataFrame(
        {
            "symbol": ["MSFT", "MSFT"],
            "session_date": [D(2004, 11, 12), D(2004, 11, 15)],
            "close": [29.97, 27.39],
        }
    )
    factors = adjustments.action_factors(bars, rows)
    assert factors.select("symbol", "ex_date").rows() == [("MSFT", D(2004, 11, 15))]
    assert factors["factor"][0] == pytest.approx(1 - 3.08 / 29.97, abs=1e-12)


# --- gzip-compressed CSV (issue 14) ----------------------------------------------------------------


def test_gzip_csv_parses_like_the_csv_inside_and_hashes_the_delivered_bytes() -> None:
    text = _csv(
        BARS_HEADER, GOOD_BAR, "AAPL,2024-01-08,10,11,9.5,10.5,12.5,USD", "MSFT,2024-01-05,1,2,1,1", GOOD_BAR
    )
    packed = gzip.compress(text, mtime=0)
    plain = _parse("bars/q1.csv", text)
    parsed = _parse("bars/Q1.CSV.GZ", packed)
    assert parsed.content_sha256 == hashlib.sha256(packed).hexdigest() != plain.content_sha256
    assert_frame_equal(parsed.good, plain.good)
    assert_frame_equal(parsed.rejects.drop("file_name"), plain.rejects.drop("file_name"))
    assert parsed.rejects.select("row_number", "field").rows() == [
        (3, "volume"),
        (4, "(row)"),
    ]  # decompressed lines
    assert (
        parsed.warnings
        == plain.warnings
        == ["dropped 1 exact duplicate row(s) (line 5); the first occurrence of each is kept"]
    )


def test_broken_gzip_files_are_file_errors() -> None:
    packed = gzip.compress(_csv(BARS_HEADER, GOOD_BAR), mtime=0)
    with pytest.raises(
        VendorFileError,
        match=r"^vendor file 'bars/a.csv.gz': not a readable gzip file \(.*\); "
        r"expected gzip-compressed CSV$",
    ):
        _parse("bars/a.csv.gz", _csv(BARS_HEADER, GOOD_BAR))  # plain text named .gz
    with pytest.raises(VendorFileError, match="not a readable gzip file"):
        _parse("bars/a.csv.gz", packed[:-12])  # truncated stream
    with pytest.raises(VendorFileError, match=r"empty file \(0 bytes once decompressed\)"):
        _parse("bars/a.csv.gz", gzip.compress(b""))


def test_parquet_corporate_actions_with_and_without_distribution_type() -> None:
    rows = {
        "symbol": ["MSFT", "MSFT"],
        "ex_date": ["2004-11-15"] * 2,
        "action_type": ["dividend"] * 2,
        "ratio": [None, None],
        "amount": [3.0, 0.08],
        "currency": ["USD", "USD"],
    }
    typed = _parse(
        "corporate_actions/a.parquet", _parquet(pl.DataFrame(rows | {"distribution_type": ["Special", None]}))
    )
    assert typed.rejects.is_empty()
    assert typed.good.select("distribution_type", "amount").rows() == [("special", 3.0), ("regular", 0.08)]
    untyped = _parse("corporate_actions/a.parquet", _parquet(pl.DataFrame(rows)))  # no column: both regular
    assert untyped.good.is_empty()
    assert untyped.rejects.select("row_number", "field").rows() == [(1, "amount"), (2, "amount")]
