"""Row-level validation rules (core.validation) on typed and text frames.

The randomized test compares the vectorized rules with a plain per-row Python oracle written from
the rule list in the docstrings, so both would have to be wrong in the same way to pass.
"""

from __future__ import annotations

import datetime as dt
import math
import random

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from wealth_pipeline.core import calendars
from wealth_pipeline.core.validation import (
    FX_RATE_BOUNDS,
    INTEGER_RANGE_REASON,
    REJECT_SCHEMA,
    MissingColumnsError,
    fx_bounds_table,
    validate,
    validate_bars,
    validate_corporate_actions,
    validate_fx_rates,
)
from wealth_pipeline.providers.base import BARS_SCHEMA, CORPORATE_ACTIONS_SCHEMA, FX_RATES_SCHEMA

KNOWN = {"AAPL": "NASDAQ", "MSFT": "NASDAQ", "JPM": "NYSE", "TD.TO": "TSX", "RY.TO": "TSX"}
D = dt.date


def _bars(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=BARS_SCHEMA, orient="row")


def _pairs(rejects: pl.DataFrame) -> set[tuple[int, str]]:
    return set(zip(rejects["row_number"].to_list(), rejects["field"].to_list(), strict=True))


def test_typed_provider_frame_passes_unchanged() -> None:
    frame = _bars(
        [
            ("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.5, 10.5, 1000, "USD"),
            ("TD.TO", D(2024, 1, 5), 80.0, 81.0, 79.0, 80.0, 0, "CAD"),
            ("AAPL", D(2024, 1, 8), 10.5, 10.5, 10.5, 10.5, 5, "USD"),
        ]
    )
    result = validate_bars(frame, known_symbols=KNOWN, is_session=calendars.is_session)
    assert result.good.schema == pl.Schema(BARS_SCHEMA)
    assert_frame_equal(result.good, frame)
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert result.rejects.is_empty()
    assert result.warnings == []
    assert result.rejected_rows == 0


def test_row_number_defaults_to_one_based_index_and_caller_column_wins() -> None:
    frame = _bars(
        [
            ("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.5, 10.5, 1000, "USD"),
            ("AAPL", D(2024, 1, 8), 10.0, 11.0, 9.5, 10.5, -7, "USD"),
        ]
    )
    assert _pairs(validate_bars(frame).rejects) == {(2, "volume")}
    numbered = frame.with_columns(row_number=pl.Series([41, 42]))
    result = validate_bars(numbered)
    assert _pairs(result.rejects) == {(42, "volume")}
    assert result.rejects["reason"].to_list() == ["volume must be >= 0"]
    assert result.rejects["value"].to_list() == ["-7"]
    assert result.good.columns == list(BARS_SCHEMA)  # row_number is not part of the good frame


def test_missing_column_raises_naming_it() -> None:
    frame = _bars([("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.5, 10.5, 1000, "USD")]).drop("volume")
    with pytest.raises(MissingColumnsError, match="'volume'") as info:
        validate_bars(frame)
    assert info.value.missing == ["volume"]


def test_typed_inputs_non_finite_fractional_volume_and_datetimes() -> None:
    frame = pl.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "AAPL", "AAPL"],
            "session_date": [
                dt.datetime(2024, 1, 2),
                dt.datetime(2024, 1, 3, 16, 0),
                dt.datetime(2024, 1, 4),
                dt.datetime(2024, 1, 5),
            ],
            "open": [10.0, 10.0, float("nan"), 10.0],
            "high": [11.0, 11.0, 11.0, float("inf")],
            "low": [9.0, 9.0, 9.0, 9.0],
            "close": [10.0, 10.0, 10.0, 10.0],
            "volume": [100.0, 100.0, 100.0, 2.5],
            "currency": ["USD", "USD", "USD", "USD"],
        }
    )
    result = validate_bars(frame)
    reasons = {(r["row_number"], r["field"]): r["reason"] for r in result.rejects.iter_rows(named=True)}
    assert reasons == {
        (2, "session_date"): "not a date (has a time of day)",
        (3, "open"): "not a finite number",
        (4, "high"): "not a finite number",
        (4, "volume"): "not a whole number",
    }
    assert result.good.schema == pl.Schema(BARS_SCHEMA)
    assert result.good.rows() == [("AAPL", D(2024, 1, 2), 10.0, 11.0, 9.0, 10.0, 100, "USD")]


def test_a_volume_beyond_the_integer_range_is_out_of_range_not_fractional() -> None:
    # Issue 14: 1e30 was "not a whole number". Digits are exact over the whole 64-bit range; a
    # decimal point or exponent only up to 2**53, so 1e16 (whole, but past 2**53) is out of range too.
    volumes = [
        "1e30",
        "-1e30",
        "9223372036854775807",
        "9223372036854775808",
        "1e16",
        "9007199254740991.0",
        "1.5e3",
    ]
    frame = pl.DataFrame(
        {
            name: [str(v)] * len(volumes)
            for name, v in zip(BARS_SCHEMA, ["AAPL", "2024-01-05", 10, 11, 9, 10, 0, "USD"], strict=True)
        }
    ).with_columns(volume=pl.Series(volumes), symbol=pl.Series([f"S{i}" for i in range(len(volumes))]))
    result = validate_bars(frame)
    assert INTEGER_RANGE_REASON == (
        "out of range: a whole number of at most 9223372036854775807 in digits, or 9007199254740992 with a decimal "
        "point or exponent"
    )
    assert result.rejects.select("row_number", "field", "value", "reason").rows() == [
        (1, "volume", "1e30", INTEGER_RANGE_REASON),
        (2, "volume", "-1e30", INTEGER_RANGE_REASON),
        (4, "volume", "9223372036854775808", INTEGER_RANGE_REASON),
        (5, "volume", "1e16", INTEGER_RANGE_REASON),
    ]
    assert result.good["volume"].to_list() == [9223372036854775807, 9007199254740991, 1500]
    typed = validate_bars(
        _bars([("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.0, 10.0, 0, "USD")]).with_columns(
            volume=pl.Series([1e30])
        )
    )  # a float parquet column
    assert typed.rejects.select("field", "reason").rows() == [("volume", INTEGER_RANGE_REASON)]


def test_several_rules_on_one_field_give_one_reject_with_joined_reasons() -> None:
    frame = _bars([("AAPL", D(2024, 1, 5), 1.0, 0.9, 1.0, 1.0, 10, "USD")])
    result = validate_bars(frame)
    assert result.rejects.rows() == [
        (1, "high", "0.9", "high is below low 1.0; high is below max(open 1.0, close 1.0)")
    ]


def test_session_check_calls_calendar_once_per_distinct_exchange_and_date() -> None:
    calls: list[tuple[str, dt.date]] = []

    def counting(exchange: str, day: dt.date) -> bool:
        calls.append((exchange, day))
        return calendars.is_session(exchange, day)

    days = [D(2024, 7, 1), D(2024, 7, 2), D(2024, 7, 3), D(2024, 7, 4), D(2024, 7, 5)]
    rows = [(s, d, 10.0, 11.0, 9.0, 10.0, 1, "USD") for d in days for s in ("AAPL", "MSFT", "TD.TO", "RY.TO")]
    result = validate_bars(_bars(rows), known_symbols=KNOWN, is_session=counting)
    assert sorted(calls) == sorted({(KNOWN[s], d) for d in days for s in ("AAPL", "MSFT", "TD.TO")})
    # July 1 is Canada Day (TSX closed), July 4 is Independence Day (NASDAQ closed).
    expected = {(4 * days.index(D(2024, 7, 4)) + i + 1, "session_date") for i in (0, 1)}
    expected |= {(4 * days.index(D(2024, 7, 1)) + i + 1, "session_date") for i in (2, 3)}
    assert _pairs(result.rejects) == expected
    assert set(result.rejects["reason"]) == {
        "not a trading session on NASDAQ",
        "not a trading session on TSX",
    }


def test_exchange_without_calendar_rejects_rows_instead_of_crashing() -> None:
    frame = _bars([("ZZ", D(2024, 1, 5), 10.0, 11.0, 9.0, 10.0, 1, "USD")])
    result = validate_bars(frame, known_symbols={"ZZ": "MOON"}, is_session=calendars.is_session)
    assert result.good.is_empty()
    assert result.rejects["field"].to_list() == ["session_date"]
    assert "cannot check sessions on MOON" in result.rejects["reason"][0]
    assert "unknown exchange 'MOON'" in result.rejects["reason"][0]


def test_session_check_without_symbol_master_is_skipped_with_a_warning() -> None:
    frame = _bars([("AAPL", D(2024, 7, 4), 10.0, 11.0, 9.0, 10.0, 1, "USD")])
    result = validate_bars(frame, is_session=calendars.is_session)
    assert result.good.height == 1
    assert result.warnings == ["session_date not checked against exchange calendars: no symbol master given"]


def test_corporate_actions_rules() -> None:
    frame = pl.DataFrame(
        [
            ("AAPL", D(2020, 8, 31), "split", 4.0, None, None),  # good: split needs no amount/currency
            ("MSFT", D(2024, 2, 14), "dividend", None, 0.75, "USD"),  # good
            ("MSFT", D(2024, 5, 15), "dividend", None, 0.0, "USD"),  # good: zero dividend
            ("AAPL", D(2024, 1, 5), "split", 0.0, None, None),
            ("AAPL", D(2024, 1, 8), "split", None, None, None),
            ("MSFT", D(2024, 1, 5), "dividend", None, -0.1, "USD"),
            ("MSFT", D(2024, 1, 8), "dividend", None, None, "usd"),
            ("MSFT", D(2024, 1, 9), "merger", 1.0, 1.0, "USD"),
            ("ZZZ", D(2024, 1, 10), "split", 2.0, None, None),
            ("TD.TO", D(2024, 7, 1), "dividend", None, 1.0, "CAD"),  # Canada Day
        ],
        schema={k: v for k, v in CORPORATE_ACTIONS_SCHEMA.items() if k != "distribution_type"},
        orient="row",
    )
    result = validate_corporate_actions(frame, known_symbols=KNOWN, is_session=calendars.is_session)
    assert result.good.schema == pl.Schema(CORPORATE_ACTIONS_SCHEMA)
    # No distribution_type column: each row gets its action's default.
    expected = frame.head(3).with_columns(distribution_type=pl.Series(["split", "regular", "regular"]))
    assert_frame_equal(result.good, expected)
    reasons = {(r["row_number"], r["field"]): r["reason"] for r in result.rejects.iter_rows(named=True)}
    assert reasons == {
        (4, "ratio"): "split ratio must be > 0",
        (5, "ratio"): "required field is empty",
        (6, "amount"): "dividend amount must be >= 0",
        (7, "amount"): "required field is empty",
        (7, "currency"): "currency code usd is not 3 uppercase letters",
        (8, "action_type"): "unknown action_type merger; expected one of split, dividend",
        (9, "symbol"): "unknown symbol ZZZ (not in the symbol master)",
        (10, "ex_date"): "not a trading session on TSX",
    }


def _actions(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CORPORATE_ACTIONS_SCHEMA, orient="row")


def test_several_distributions_on_one_ex_date_are_kept_by_distribution_type() -> None:
    # MSFT 2004-11-15 (issue 14): a 3.00 special and the 0.08 regular quarterly dividend.
    frame = _actions(
        [
            ("MSFT", D(2004, 11, 15), "dividend", None, 3.00, "USD", "special"),
            ("MSFT", D(2004, 11, 15), "dividend", None, 0.08, "USD", "regular"),
            ("AAPL", D(2005, 2, 28), "split", 2.0, None, None, None),  # empty: split
            ("AAPL", D(2012, 8, 9), "dividend", None, 2.65, "USD", " Regular "),  # trimmed, any case
        ]
    )
    result = validate_corporate_actions(frame, known_symbols=KNOWN, is_session=calendars.is_session)
    assert result.rejects.is_empty()
    assert result.warnings == []
    assert result.good["distribution_type"].to_list() == ["special", "regular", "split", "regular"]
    assert result.good["amount"].to_list()[:2] == [3.00, 0.08]


def test_same_distribution_twice_is_still_a_duplicate_or_a_conflict() -> None:
    rows = [
        ("MSFT", D(2004, 11, 15), "dividend", None, 3.00, "USD", "special"),
        ("MSFT", D(2004, 11, 15), "dividend", None, 3.0, "USD", "SPECIAL"),  # the same row again
        ("MSFT", D(2004, 11, 15), "dividend", None, 0.08, "USD", None),  # regular (default)
    ]
    true_duplicate = validate_corporate_actions(_actions(rows))
    assert true_duplicate.good.height == 2
    assert true_duplicate.rejects.is_empty()
    assert true_duplicate.warnings == [
        "dropped 1 exact duplicate row(s) (row_number 2); the first occurrence of each is kept"
    ]
    # The vendor that sends both distributions without telling them apart: both default to regular,
    # so they share a key with different amounts, and neither is trusted.
    untyped = validate_corporate_actions(_actions([(*rows[0][:6], None), rows[2]]))
    assert untyped.good.is_empty()
    assert untyped.rejects.select("row_number", "field", "reason").rows() == [
        (
            1,
            "amount",
            "conflicting duplicate: rows 1, 2 share key (MSFT, 2004-11-15, dividend, regular) with different amount",
        ),
        (
            2,
            "amount",
            "conflicting duplicate: rows 1, 2 share key (MSFT, 2004-11-15, dividend, regular) with different amount",
        ),
    ]
    two_specials = validate_corporate_actions(_actions([rows[0], (*rows[2][:6], "special")]))
    assert two_specials.good.is_empty()
    assert set(two_specials.rejects["field"]) == {"amount"}


def test_distribution_type_must_fit_the_action() -> None:
    frame = _actions(
        [
            ("MSFT", D(2004, 11, 15), "dividend", None, 3.00, "USD", "bonus"),
            ("AAPL", D(2005, 2, 28), "split", 2.0, None, None, "special"),
            ("AAPL", D(2014, 6, 9), "split", 7.0, None, None, "Split"),  # good
        ]
    )
    result = validate_corporate_actions(frame)
    assert result.good.select("symbol", "distribution_type").rows() == [("AAPL", "split")]
    assert result.rejects.select("row_number", "field", "value", "reason").rows() == [
        (
            1,
            "distribution_type",
            "bonus",
            "distribution_type bonus is not valid for a dividend; expected one of "
            "regular, special, supplemental, capital_gain, return_of_capital (empty: regular)",
        ),
        (
            2,
            "distribution_type",
            "special",
            "distribution_type special is not valid for a split; expected one of split (empty: split)",
        ),
    ]


def test_fx_rules_bounds_and_weekdays() -> None:
    frame = pl.DataFrame(
        [
            (D(2024, 1, 5), "USD", "CAD", 1.35),  # good
            (D(2024, 7, 4), "USD", "CAD", 1.36),  # good: a US holiday is still an FX weekday
            (D(2024, 1, 5), "CAD", "USD", 0.74),  # good: inverse pair bounds
            (D(2024, 1, 5), "CAD", "CAD", 1.0),  # good: identity
            (D(2024, 1, 8), "USD", "CAD", 0.2),
            (D(2024, 1, 8), "CAD", "USD", 5.0),
            (D(2024, 1, 8), "SEK", "NOK", 0.0),
            (D(2024, 1, 9), "SEK", "NOK", 2e6),
            (D(2024, 1, 6), "EUR", "USD", 1.1),  # Saturday
            (D(2024, 1, 8), "usd", "CAD", 1.3),
            (D(2024, 1, 9), "CAD", "CAD", 1.01),
        ],
        schema=FX_RATES_SCHEMA,
        orient="row",
    )
    result = validate_fx_rates(frame)
    assert_frame_equal(result.good, frame.head(4))
    reasons = {(r["row_number"], r["field"]): r["reason"] for r in result.rejects.iter_rows(named=True)}
    assert reasons == {
        (5, "rate"): "rate outside the sane range [0.5, 3.0] for USD/CAD",
        (6, "rate"): f"rate outside the sane range [{1 / 3.0}, 2.0] for CAD/USD",
        (7, "rate"): "rate must be > 0",
        (8, "rate"): "rate outside the sane range [1e-6, 1000000.0] for SEK/NOK",
        (9, "session_date"): "2024-01-06 is a weekend day; FX rates are expected on weekdays",
        (10, "base_currency"): "currency code usd is not 3 uppercase letters",
        (11, "rate"): "rate outside the sane range [1.0, 1.0] for CAD/CAD",
    }


def test_fx_custom_bounds_and_table() -> None:
    table = fx_bounds_table()
    assert table["USD/CAD"] == (0.5, 3.0)
    assert table["CAD/USD"] == pytest.approx((1 / 3.0, 2.0))
    assert set(table) >= {f"{b}/{q}" for b, q in FX_RATE_BOUNDS}
    frame = pl.DataFrame([(D(2024, 1, 5), "USD", "CAD", 1.35)], schema=FX_RATES_SCHEMA, orient="row")
    tight = validate_fx_rates(frame, bounds={("USD", "CAD"): (1.4, 1.5)})
    assert tight.rejects["reason"].to_list() == ["rate outside the sane range [1.4, 1.5] for USD/CAD"]
    with pytest.raises(ValueError, match="USD/CAD"):
        fx_bounds_table({("USD", "CAD"): (2.0, 1.0)})


def test_validate_dispatches_and_rejects_unknown_dataset() -> None:
    frame = pl.DataFrame([(D(2024, 1, 5), "USD", "CAD", 1.35)], schema=FX_RATES_SCHEMA, orient="row")
    assert validate("fx_rates", frame, known_symbols=KNOWN).good.height == 1
    with pytest.raises(ValueError, match="unknown dataset 'quotes'"):
        validate("quotes", frame)


# ---------------------------------------------------------------------------------------------
# Randomized comparison with a per-row oracle.


def _oracle(rows: list[dict], known: dict[str, str]) -> tuple[set[tuple[int, str]], list[int], list[int]]:
    """Expected (row, field) rejects, good row numbers and dropped exact duplicates, row by row."""
    prices = ("open", "high", "low", "close")
    seen: set[tuple] = set()
    kept: list[dict] = []
    dropped: list[int] = []
    for row in rows:
        signature = tuple(
            row[name] if not isinstance(row[name], float) or not math.isnan(row[name]) else "nan"
            for name in BARS_SCHEMA
        )
        if signature in seen:
            dropped.append(row["row_number"])
            continue
        seen.add(signature)
        kept.append(row)

    def ok(value: object) -> bool:
        return value is not None and not (isinstance(value, float) and not math.isfinite(value))

    expected: set[tuple[int, str]] = set()
    for row in kept:
        n = row["row_number"]
        for name in BARS_SCHEMA:
            if row[name] is None or (isinstance(row[name], float) and not math.isfinite(row[name])):
                expected.add((n, name))
        for name in prices:
            if ok(row[name]) and row[name] <= 0:
                expected.add((n, name))
        o, h, lo, c = (row[name] for name in prices)
        if ok(h) and ok(lo) and h < lo:
            expected.add((n, "high"))
        valid_oc = [v for v in (o, c) if ok(v)]
        if ok(h) and valid_oc and h < max(valid_oc):
            expected.add((n, "high"))
        if ok(lo) and valid_oc and lo > min(valid_oc):
            expected.add((n, "low"))
        if row["volume"] is not None and row["volume"] < 0:
            expected.add((n, "volume"))
        if row["currency"] is not None and not (
            len(row["currency"]) == 3 and row["currency"].isupper() and row["currency"].isalpha()
        ):
            expected.add((n, "currency"))
        if row["symbol"] is not None and row["symbol"] not in known:
            expected.add((n, "symbol"))
        if (
            row["symbol"] in known
            and row["session_date"] is not None
            and not calendars.is_session(known[row["symbol"]], row["session_date"])
        ):
            expected.add((n, "session_date"))
    groups: dict[tuple, list[dict]] = {}
    for row in kept:
        if row["symbol"] is not None and row["session_date"] is not None:
            groups.setdefault((row["symbol"], row["session_date"]), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        for name in BARS_SCHEMA:
            values = {repr(r[name]) for r in group}
            if len(values) > 1:
                expected |= {(r["row_number"], name) for r in group}
    rejected_rows = {n for n, _ in expected}
    good = [row["row_number"] for row in kept if row["row_number"] not in rejected_rows]
    return expected, good, dropped


def test_vectorized_rules_match_per_row_oracle() -> None:
    rng = random.Random(20240105)
    symbols = [*KNOWN, "NOPE"]
    days = [D(2024, 5, 1) + dt.timedelta(days=i) for i in range(250)]  # weekends and holidays included
    keys = [(symbol, day) for symbol in symbols for day in days]
    rng.shuffle(keys)
    rows: list[dict] = []
    for n, (symbol, day) in enumerate(keys[:1200], start=1):
        o = round(rng.uniform(5, 200), 2)
        c = round(o * rng.uniform(0.95, 1.05), 2)
        h = round(max(o, c) * rng.uniform(1.0, 1.02), 2)
        lo = round(min(o, c) * rng.uniform(0.98, 1.0), 2)
        row = {
            "row_number": n,
            "symbol": symbol,
            "session_date": day,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": rng.randint(0, 10**6),
            "currency": "USD",
        }
        roll = rng.random()
        if roll < 0.05:
            row[rng.choice(["open", "high", "low", "close"])] = rng.choice([0.0, -1.0, float("nan"), None])
        elif roll < 0.10:
            row["high"], row["low"] = row["low"], row["high"]
        elif roll < 0.13:
            row["volume"] = rng.choice([-1, None])
        elif roll < 0.16:
            row["currency"] = rng.choice(["usd", "US", "USDX", None, "U5D"])
        elif roll < 0.18:
            row["symbol"] = None
        elif roll < 0.20:
            row["session_date"] = None
        elif roll < 0.23 and rows:
            row = dict(rng.choice(rows), row_number=n)  # exact duplicate of an earlier row
        elif roll < 0.26 and rows:  # same key as an earlier row, different values
            earlier = rng.choice(rows)
            row = dict(earlier, row_number=n, volume=rng.choice([earlier["volume"], 7]), currency="CAD")
        rows.append(row)
    frame = pl.DataFrame(rows, schema={"row_number": pl.Int64, **BARS_SCHEMA})
    result = validate_bars(frame, known_symbols=KNOWN, is_session=calendars.is_session)
    expected, good, dropped = _oracle(rows, KNOWN)
    assert _pairs(result.rejects) == expected
    # The generator really exercises the rules and still lets most rows through.
    fields = {field for _, field in expected}
    assert fields == set(BARS_SCHEMA)
    assert len(dropped) > 10
    assert 300 < len(good) < 1000
    good_frame = frame.filter(pl.col("row_number").is_in(good)).drop("row_number")
    assert_frame_equal(result.good, good_frame)
    assert result.warnings[0].startswith(f"dropped {len(dropped)} exact duplicate row(s)")


def test_a_raw_version_written_before_distribution_type_reads_with_defaults(tmp_path) -> None:
    """Raw corporate-action versions from before issue 14 have no distribution_type; they still read."""
    from wealth_pipeline.lakehouse import raw
    from wealth_pipeline.lakehouse.store import open_store

    store = open_store(str(tmp_path / "lake"))
    old = _actions([("MSFT", D(2004, 11, 15), "dividend", None, 0.08, "USD", None)]).drop("distribution_type")
    raw.write_versions(store, "corporate_actions", old, "ex_date", [D(2004, 11, 15)])
    read = raw.read_current(
        store, "corporate_actions", D(2004, 11, 15), D(2004, 11, 15), CORPORATE_ACTIONS_SCHEMA
    )
    assert read.columns == list(CORPORATE_ACTIONS_SCHEMA) and read["distribution_type"].to_list() == [None]
    assert validate_corporate_actions(read).good["distribution_type"].to_list() == ["regular"]
    # Any other missing column is still an error (bars without volume are not silently null).
    bars = _bars([("AAPL", D(2024, 1, 5), 10.0, 11.0, 9.5, 10.5, 1000, "USD")]).drop("volume")
    raw.write_versions(store, "bars", bars, "session_date", [D(2024, 1, 5)])
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        raw.read_current(store, "bars", D(2024, 1, 5), D(2024, 1, 5), BARS_SCHEMA)
