"""The CLI's input checks on their own: every bad date, partition key and range gets one line naming it.

Oracles: the exchange calendars as published (2024-12-25 is closed on NYSE, NASDAQ and TSX; 2024-07-04
is a NYSE holiday on which TSX trades; 2024-07-01 is Canada Day, on which NYSE trades) and the
weekdays of the Gregorian calendar (2024-12-28 is a Saturday, 2024-12-29 a Sunday).
"""

from __future__ import annotations

import datetime as dt

import pytest

from wealth_pipeline.cli_inputs import Bounds, InputError, check_partition_key, check_range, parse_date

BOUNDS = Bounds(dt.date(2023, 1, 2), dt.date(2025, 3, 14))


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        fn(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_saturday_names_the_nearest_session_friday_before_monday() -> None:
    message = _error(check_partition_key, "--partition", "2024-12-28", BOUNDS, single=True)
    assert message.startswith("--partition 2024-12-28: a Saturday, not a trading session")
    assert "the nearest session is 2024-12-27 (Friday; also 2024-12-30)" in message


def test_a_sunday_names_the_following_monday() -> None:
    message = _error(check_partition_key, "--partition", "2024-12-29", BOUNDS, single=True)
    assert "the nearest session is 2024-12-30 (Monday; also 2024-12-27)" in message


def test_a_weekend_range_end_is_refused_too() -> None:
    message = _error(check_range, "--start", "2024-07-01", "--end", "2024-07-06", BOUNDS)
    assert message.startswith("--end 2024-07-06: a Saturday") and "2024-07-05" in message


def test_a_day_closed_everywhere_says_closed_and_names_the_sessions_around_it() -> None:
    message = _error(check_partition_key, "--partition", "2024-12-25", BOUNDS, single=True)
    assert "every listing exchange (NYSE, NASDAQ, TSX) is closed that day" in message
    assert "2024-12-24" in message and "2024-12-26" in message


def test_a_holiday_of_one_exchange_is_a_session_of_another() -> None:
    assert check_partition_key("--partition", "2024-07-04", BOUNDS, single=True) == "2024-07-04"  # TSX trades
    assert check_partition_key("--partition", "2024-07-01", BOUNDS, single=True) == "2024-07-01"  # NYSE trades


def test_a_closed_day_inside_a_range_or_at_its_end_is_a_partition() -> None:
    assert check_range("--start", "2024-12-23", "--end", "2024-12-25", BOUNDS) == ("2024-12-23", "2024-12-25")


def test_future_and_early_dates_name_the_valid_span() -> None:
    message = _error(check_partition_key, "--partition", "2025-03-17", BOUNDS, single=True)
    assert message == "--partition 2025-03-17: in the future; the last partition is 2025-03-14"
    message = _error(check_partition_key, "--partition", "2022-12-30", BOUNDS, single=True)
    assert message == ("--partition 2022-12-30: before the first partition 2023-01-02 (WEALTH_PARTITION_START); "
                       "use a date from 2023-01-02 to 2025-03-14")


def test_an_end_date_from_the_settings_is_named_as_such() -> None:
    bounds = Bounds(dt.date(2023, 1, 2), dt.date(2024, 12, 31), end_source="WEALTH_PARTITION_END")
    message = _error(check_partition_key, "--partition", "2025-01-02", bounds, single=True)
    assert message == "--partition 2025-01-02: after the last partition (WEALTH_PARTITION_END); the last partition is 2024-12-31"


@pytest.mark.parametrize("text", ["2024-13-01", "2024-02-30"])
def test_impossible_dates(text: str) -> None:
    message = _error(parse_date, "--partition", text)
    assert message.startswith(f"--partition {text!r}: not a calendar date") and "YYYY-MM-DD" in message


@pytest.mark.parametrize("text", ["01/02/2023", "yesterday", "2024-7-2", ""])
def test_malformed_dates(text: str) -> None:
    assert _error(parse_date, "--start", text) == f"--start {text!r}: not a date; expected YYYY-MM-DD (e.g. 2024-07-02)"


def test_a_reversed_range_says_how_to_swap_it() -> None:
    message = _error(check_range, "--start", "2024-07-05", "--end", "2024-07-01", BOUNDS)
    assert message == ("--end 2024-07-01 is before --start 2024-07-05: the range is reversed; "
                       "swap them (--start 2024-07-01 --end 2024-07-05)")


def test_valid_inputs_pass_through_normalized() -> None:
    assert check_partition_key("--partition", " 2024-07-02 ", BOUNDS, single=True) == "2024-07-02"
    assert check_range("--start", "2024-07-01", "--end", "2024-07-01", BOUNDS) == ("2024-07-01", "2024-07-01")


def test_the_demo_range_bounds_the_ui_unless_the_environment_sets_them(tmp_path) -> None:
    from wealth_pipeline.cli_inputs import demo_partition_env, record_demo_range

    assert demo_partition_env(tmp_path, {}) == {}, "no demo ran here: partitions run to today"
    record_demo_range(tmp_path, "2023-01-02", "2024-12-31")
    assert demo_partition_env(tmp_path, {}) == {"WEALTH_PARTITION_START": "2023-01-02",
                                                "WEALTH_PARTITION_END": "2024-12-31"}
    assert demo_partition_env(tmp_path, {"WEALTH_PARTITION_END": "2025-06-30"}) == {
        "WEALTH_PARTITION_START": "2023-01-02"}
    (tmp_path / "demo-range.json").write_text("{not json")
    message = _error(demo_partition_env, tmp_path, {})
    assert "demo-range.json: not the JSON a demo writes" in message


def test_ui_on_the_demo_state_loads_partitions_that_end_with_the_demo(tmp_path) -> None:
    """The bounds `ui` hands to `dagster dev` make the code location's partitions stop at the demo's end."""
    import os
    import subprocess
    import sys

    from wealth_pipeline.cli_inputs import demo_partition_env, record_demo_range

    record_demo_range(tmp_path, "2024-12-02", "2024-12-31")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEALTH_")}
    env.update(WEALTH_HOME=str(tmp_path), **demo_partition_env(tmp_path, env))
    code = "from wealth_pipeline.defs.partitions import trading_sessions as t; k = t.get_partition_keys(); print(k[0], k[-1])"
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["2024-12-02", "2024-12-31"]
