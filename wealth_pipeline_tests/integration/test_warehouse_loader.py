"""The warehouse loader on a real server: idempotency, isolation, concurrency, failures, dtypes, rollups."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
import uuid
from decimal import Decimal

import polars as pl
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from wealth_pipeline.warehouse import loader, timescale
from wealth_pipeline.warehouse.loader import LoadError, load_window, replace_table, upsert

pytestmark = pytest.mark.integration

BARS = "market.bars_daily"
JAN = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))
FEB = (dt.date(2024, 2, 1), dt.date(2024, 2, 29))


@pytest.fixture
def wh(migrated_flavoured_db: tuple[str, str]) -> str:
    """A migrated warehouse database on the plain test server or on the TimescaleDB server."""
    flavour, url = migrated_flavoured_db
    with psycopg.connect(url) as conn:
        assert timescale.timescale_installed(conn) == (flavour == "timescale")
    return url


@pytest.fixture
def ts_wh(migrated_timescale_url: str) -> str:
    """A migrated warehouse database on the TimescaleDB server only."""
    return migrated_timescale_url


BAR_SCHEMA = {
    "symbol": pl.String, "session_date": pl.Date, "exchange": pl.String, "currency": pl.String,
    "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64, "volume": pl.Int64,
    "adj_open": pl.Float64, "adj_high": pl.Float64, "adj_low": pl.Float64, "adj_close": pl.Float64,
    "adj_volume": pl.Float64, "source": pl.String,
}


def sessions(start: dt.date, end: dt.date) -> list[dt.date]:
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return [d for d in days if d.weekday() < 5]


def bars(symbols: list[str], start: dt.date, end: dt.date, base: float = 100.0) -> pl.DataFrame:
    rows = []
    for k, symbol in enumerate(symbols):
        for i, day in enumerate(sessions(start, end)):
            close = base + 10 * k + i
            rows.append({
                "symbol": symbol, "session_date": day, "exchange": "NYSE", "currency": "USD",
                "open": close - 0.5, "high": close + 1.0, "low": close - 1.0, "close": close,
                "volume": 1000 * (i + 1), "adj_open": (close - 0.5) / 2, "adj_high": (close + 1.0) / 2,
                "adj_low": (close - 1.0) / 2, "adj_close": close / 2, "adj_volume": 2000.0 * (i + 1),
                "source": "test",
            })
    return pl.DataFrame(rows, schema=BAR_SCHEMA)


def load(url: str, frame: pl.DataFrame, window: tuple[dt.date, dt.date], run_id: str = "run-1",
         **kwargs: object) -> loader.LoadResult:
    return load_window(url, BARS, frame, time_column="session_date", window_start=window[0], window_end=window[1],
                       asset="bars_daily", partition_key=window[0].isoformat(), run_id=run_id, **kwargs)


def read_bars(url: str, where: str = "true") -> pl.DataFrame:
    columns = ["symbol", "session_date", "exchange", "currency", "open", "high", "low", "close", "volume",
               "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume", "source"]
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM market.bars_daily WHERE {where} "
                            "ORDER BY symbol, session_date").fetchall()
    return pl.DataFrame(rows, schema=columns, orient="row",
                        schema_overrides={"session_date": pl.Date, "volume": pl.Int64})


def audit(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT asset, partition_key, table_name, window_start, window_end, rows, checksum, run_id "
            "FROM ops.loads ORDER BY load_id"
        ).fetchall()


def test_reloading_a_window_is_idempotent(wh: str) -> None:
    frame = bars(["AAA", "BBB"], *JAN)
    first = load(wh, frame, JAN, run_id="run-1")
    second = load(wh, frame.sample(fraction=1.0, shuffle=True, seed=3).select(reversed(frame.columns)), JAN,
                  run_id="run-2")
    assert first.rows == second.rows == frame.height == 2 * len(sessions(*JAN))
    assert first.checksum == second.checksum and len(first.checksum) == 64
    assert read_bars(wh).equals(frame.sort("symbol", "session_date"))
    assert audit(wh) == [
        ("bars_daily", "2024-01-01", BARS, JAN[0], JAN[1], frame.height, first.checksum, "run-1"),
        ("bars_daily", "2024-01-01", BARS, JAN[0], JAN[1], frame.height, first.checksum, "run-2"),
    ]
    # Defaults fill the table columns the frame does not carry.
    with psycopg.connect(wh) as conn:
        assert conn.execute("SELECT DISTINCT split_factor, dividend_factor, adj_factor FROM market.bars_daily"
                            ).fetchall() == [(1.0, 1.0, 1.0)]
    changed = frame.with_columns(pl.when(pl.col("symbol") == "AAA").then(pl.col("close") + 1).otherwise(pl.col("close")))
    assert load(wh, changed, JAN).checksum != first.checksum


def test_loading_a_window_leaves_other_windows_alone(wh: str) -> None:
    jan, feb = bars(["AAA", "BBB"], *JAN), bars(["AAA", "BBB"], *FEB, base=500.0)
    load(wh, jan, JAN)
    load(wh, feb, FEB)
    replacement = bars(["AAA"], *JAN, base=900.0)  # fewer rows: BBB's January disappears
    load(wh, replacement, JAN)
    assert read_bars(wh, "session_date >= '2024-02-01'").equals(feb.sort("symbol", "session_date"))
    assert read_bars(wh, "session_date < '2024-02-01'").equals(replacement)
    empty = bars([], *JAN)
    result = load(wh, empty, JAN)
    assert result.rows == 0
    assert read_bars(wh, "session_date < '2024-02-01'").height == 0
    assert read_bars(wh).equals(feb.sort("symbol", "session_date"))


def test_entity_filter_replaces_only_the_given_entities(wh: str) -> None:
    load(wh, bars(["AAA", "BBB", "CCC"], *JAN), JAN)
    update = bars(["AAA", "CCC"], *JAN, base=700.0).filter(pl.col("symbol") == "AAA")
    load(wh, update, JAN, entity_filter=("symbol", ["AAA", "CCC"]))
    after = read_bars(wh)
    assert after.filter(pl.col("symbol") == "AAA").equals(update)
    assert after.filter(pl.col("symbol") == "BBB").equals(bars(["AAA", "BBB"], *JAN).filter(pl.col("symbol") == "BBB"))
    assert after.filter(pl.col("symbol") == "CCC").height == 0  # in the filter, absent from the frame
    with pytest.raises(LoadError, match=r"market\.bars_daily window 2024-01-01\.\.2024-01-31 column 'symbol'.*entity filter"):
        load(wh, bars(["BBB"], *JAN), JAN, entity_filter=("symbol", ["AAA"]))


def test_concurrent_loads_of_one_window_never_duplicate(wh: str) -> None:
    frames = [bars(["AAA", "BBB"], *JAN, base=100.0), bars(["AAA", "BBB"], *JAN, base=300.0)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            load(wh, frames[i], JAN, run_id=f"thread-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = read_bars(wh)
    assert result.height == frames[0].height
    assert any(result.equals(f.sort("symbol", "session_date")) for f in frames)
    assert sorted(r[7] for r in audit(wh)) == ["thread-0", "thread-1"]


def test_rejected_rows_leave_the_previous_window_intact(wh: str) -> None:
    original = bars(["AAA"], *JAN)
    load(wh, original, JAN)
    duplicated = pl.concat([bars(["AAA"], *JAN, base=200.0), bars(["AAA"], *JAN, base=200.0).head(1)])
    with pytest.raises(LoadError, match=r"market\.bars_daily window 2024-01-01\.\.2024-01-31.*rolled back.*duplicate key"):
        load(wh, duplicated, JAN)
    nulls = bars(["AAA"], *JAN, base=200.0).with_columns(
        pl.when(pl.col("session_date") == dt.date(2024, 1, 10)).then(None).otherwise(pl.col("close")).alias("close"))
    with pytest.raises(LoadError, match=r"window 2024-01-01\.\.2024-01-31 column 'close': 1 NULL value\(s\) in a NOT NULL column \(first at frame row 7\)"):
        load(wh, nulls, JAN)
    assert read_bars(wh).equals(original)
    assert len(audit(wh)) == 1


def test_a_connection_killed_mid_load_leaves_the_previous_window_intact(wh: str) -> None:
    original = bars(["AAA", "BBB"], *JAN)
    load(wh, original, JAN)
    errors: list[BaseException] = []
    application = f"killed-load-{uuid.uuid4().hex[:6]}"
    victim_url = make_conninfo(wh, application_name=application)
    # Hold ops.loads so that the load blocks after its DELETE and COPY, just before the audit row.
    with psycopg.connect(wh) as blocker:
        blocker.execute("LOCK TABLE ops.loads IN ACCESS EXCLUSIVE MODE")

        def victim() -> None:
            try:
                load(victim_url, bars(["AAA", "BBB"], *JAN, base=999.0), JAN)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=victim)
        thread.start()
        with psycopg.connect(wh, autocommit=True) as admin:
            pid = None
            for _ in range(600):
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (application,),
                ).fetchone()
                if row:
                    pid = row[0]
                    break
                time.sleep(0.05)
            assert pid is not None, "the load never reached the audit insert"
            # Inside the load's transaction the window is already deleted and re-copied.
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        blocker.rollback()
    thread.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], LoadError), errors
    assert str(errors[0]).startswith("market.bars_daily window 2024-01-01..2024-01-31: load rolled back: ")
    assert read_bars(wh).equals(original.sort("symbol", "session_date"))
    assert len(audit(wh)) == 1


def test_bad_input_is_refused_with_table_window_and_column(wh: str) -> None:
    frame = bars(["AAA"], *JAN)
    with pytest.raises(LoadError, match=r"^market\.bars_daily window 2024-02-01\.\.2024-02-29 column 'session_date': 23 row\(s\) outside the window \(e\.g\. 2024-01-01\)"):
        load(wh, frame, FEB)
    with pytest.raises(LoadError, match=r"column 'colour': frame columns \['colour'\] are not columns"):
        load(wh, frame.with_columns(colour=pl.lit("red")), JAN)
    with pytest.raises(LoadError, match=r"column 'close': cannot convert String to double precision"):
        load(wh, frame.with_columns(close=pl.lit("abc")), JAN)
    with pytest.raises(LoadError, match=r"NOT NULL columns \['close'\] are missing"):
        load(wh, frame.drop("close"), JAN)
    with pytest.raises(LoadError, match=r"market\.nope: no such table"):
        load_window(wh, "market.nope", frame, time_column="session_date", window_start=JAN[0], window_end=JAN[1],
                    asset="a", partition_key="p", run_id="r")
    with pytest.raises(LoadError, match="window_start is after window_end"):
        load(wh, frame, (JAN[1], JAN[0]))
    assert read_bars(wh).height == 0 and audit(wh) == []


def test_dtype_coverage_round_trips_values_and_nulls(wh: str) -> None:
    with psycopg.connect(wh, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE analytics.dtype_probe (id text PRIMARY KEY, d date NOT NULL, ts timestamptz, "
            "naive timestamp, t text, vc varchar(20), f double precision, r real, i bigint, i4 integer, "
            "i2 smallint, b boolean, n numeric(12, 4), note text NOT NULL DEFAULT 'default-note')"
        )
    utc = dt.UTC
    frame = pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "d": [dt.date(2024, 1, 2), dt.date(1999, 12, 31), dt.date(2000, 1, 1), dt.date(2024, 1, 3)],
            "ts": [dt.datetime(2024, 1, 2, 15, 30, tzinfo=utc), None, dt.datetime(1970, 1, 1, tzinfo=utc),
                   dt.datetime(2038, 1, 19, 3, 14, 7, 123456, tzinfo=utc)],
            "naive": [dt.datetime(2024, 1, 2, 9, 30), None, dt.datetime(1900, 1, 1), dt.datetime(2000, 1, 1, 0, 0, 1)],
            "t": ["plain", None, "", "ünïcödé ✓ x'; DROP TABLE market.bars_daily; --"],
            "vc": ["short", "tab\there", None, "x" * 20],
            "f": [1.5, None, -0.0, float("nan")],
            "r": [0.25, -1.5, None, 3.0],
            "i": [2**62, None, -(2**63), 0],
            "i4": [2**31 - 1, -(2**31), None, 7],
            "i2": [32767, None, -32768, 1],
            "b": [True, False, None, True],
            "n": [1.25, None, -3.5, 12345678.1234],
        },
        schema_overrides={"r": pl.Float32, "i4": pl.Int32, "i2": pl.Int16,
                          "ts": pl.Datetime("us", "UTC"), "naive": pl.Datetime("us")},
    )
    result = load_window(wh, "analytics.dtype_probe", frame, time_column="d", window_start=dt.date(1999, 1, 1),
                         window_end=dt.date(2024, 12, 31), asset="probe", partition_key="all", run_id="r")
    assert result.rows == 4
    with psycopg.connect(wh) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute("SELECT * FROM analytics.dtype_probe ORDER BY id").fetchall()
    assert rows[0] == ("a", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 15, 30, tzinfo=utc), dt.datetime(2024, 1, 2, 9, 30),
                       "plain", "short", 1.5, 0.25, 2**62, 2**31 - 1, 32767, True, Decimal("1.2500"), "default-note")
    assert rows[1] == ("b", dt.date(1999, 12, 31), None, None, None, "tab\there", None, -1.5, None, -(2**31), None,
                       False, None, "default-note")
    assert rows[2][:6] == ("c", dt.date(2000, 1, 1), dt.datetime(1970, 1, 1, tzinfo=utc), dt.datetime(1900, 1, 1), "", None)
    assert math.copysign(1.0, rows[2][6]) == -1.0 and rows[2][7] is None and rows[2][8] == -(2**63)
    assert rows[2][9:13] == (None, -32768, None, Decimal("-3.5000"))
    assert rows[3][1:6] == (dt.date(2024, 1, 3), dt.datetime(2038, 1, 19, 3, 14, 7, 123456, tzinfo=utc),
                            dt.datetime(2000, 1, 1, 0, 0, 1), "ünïcödé ✓ x'; DROP TABLE market.bars_daily; --", "x" * 20)
    assert math.isnan(rows[3][6]) and rows[3][7:] == (3.0, 0, 7, 1, True, Decimal("12345678.1234"), "default-note")
    reordered = frame.reverse().select(sorted(frame.columns))
    again = load_window(wh, "analytics.dtype_probe", reordered, time_column="d", window_start=dt.date(1999, 1, 1),
                        window_end=dt.date(2024, 12, 31), asset="probe", partition_key="all", run_id="r2")
    assert again.checksum == result.checksum
    with pytest.raises(LoadError, match=r"column 'vc'.*rolled back.*too long"):
        load_window(wh, "analytics.dtype_probe", frame.with_columns(vc=pl.lit("y" * 21)), time_column="d",
                    window_start=dt.date(1999, 1, 1), window_end=dt.date(2024, 12, 31), asset="probe",
                    partition_key="all", run_id="r3")


def test_replace_table_and_upsert(wh: str) -> None:
    securities = pl.DataFrame({
        "symbol": ["AAA", "BBB", "x'; DROP TABLE market.bars_daily; --"], "name": ["A Inc", "B Ltd", "Quote Co"],
        "exchange": ["NYSE", "TSX", "NASDAQ"], "currency": ["USD", "CAD", "USD"],
        "asset_class": ["equity", "equity", "etf"], "sector": [None, "Energy", "Tech"],
        "is_synthetic": [True, False, True],
    })
    first = replace_table(wh, "ref.securities", securities, "securities", "run-1")
    second = replace_table(wh, "ref.securities", securities.head(2), "securities", "run-2")
    assert (first.rows, second.rows) == (3, 2)
    with psycopg.connect(wh) as conn:
        rows = conn.execute("SELECT symbol, sector, is_synthetic, updated_at IS NOT NULL FROM ref.securities ORDER BY 1").fetchall()
        assert rows == [("AAA", None, True, True), ("BBB", "Energy", False, True)]
        assert conn.execute("SELECT to_regclass('market.bars_daily') IS NOT NULL").fetchone() == (True,)
    assert [r[3:6] for r in audit(wh)] == [(None, None, 3), (None, None, 2)]

    users = pl.DataFrame({"user_id": ["u1", "u2"], "display_name": ["One", "Two"]})
    upsert(wh, "portfolio.users", users, asset="users", run_id="r")
    upsert(wh, "portfolio.users", pl.DataFrame({"user_id": ["u2", "u3"], "display_name": ["Deux", "Trois"]}),
           asset="users", run_id="r")
    with psycopg.connect(wh) as conn:
        assert conn.execute("SELECT user_id, display_name FROM portfolio.users ORDER BY 1").fetchall() == [
            ("u1", "One"), ("u2", "Deux"), ("u3", "Trois")]
    with pytest.raises(LoadError, match=r"portfolio\.users column 'user_id': duplicate keys"):
        upsert(wh, "portfolio.users", pl.DataFrame({"user_id": ["u1", "u1"]}), asset="users", run_id="r")


def test_rollups_match_an_independent_aggregation(wh: str) -> None:
    window = (dt.date(2024, 1, 1), dt.date(2024, 3, 31))
    frame = bars(["AAA", "BBB"], *window)
    load(wh, frame, window)
    refreshed = timescale.refresh_rollups(wh, *window)
    assert refreshed == ["market.bars_monthly", "market.bars_weekly"]

    def expected(unit: str) -> pl.DataFrame:
        key = pl.col("session_date").dt.truncate("1w" if unit == "week" else "1mo").alias(f"{unit}_start")
        return (frame.sort("session_date").group_by("symbol", key).agg(
            pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
            pl.col("volume").sum(), pl.col("adj_open").first(), pl.col("adj_close").last(),
            pl.col("adj_volume").sum(), pl.len().cast(pl.Int64).alias("sessions"),
        ).sort("symbol", f"{unit}_start"))

    for unit, view in (("week", "market.bars_weekly"), ("month", "market.bars_monthly")):
        with psycopg.connect(wh) as conn:
            rows = conn.execute(
                f"SELECT symbol, {unit}_start, open, high, low, close, volume, adj_open, adj_close, adj_volume, "
                f"sessions FROM {view} ORDER BY symbol, {unit}_start"
            ).fetchall()
        got = pl.DataFrame(rows, schema=expected(unit).columns, orient="row",
                           schema_overrides={f"{unit}_start": pl.Date, "volume": pl.Int64, "sessions": pl.Int64})
        assert got.equals(expected(unit)), unit
    assert expected("week")["week_start"].dt.weekday().unique().to_list() == [1]  # Mondays

    # A corrected window shows up in the rollups after the refresh.
    load(wh, bars(["AAA", "BBB"], *JAN, base=1000.0), JAN)
    timescale.refresh_rollups(wh, *JAN)
    with psycopg.connect(wh) as conn:
        assert conn.execute("SELECT close FROM market.bars_monthly WHERE symbol = 'AAA' AND month_start = '2024-01-01'"
                            ).fetchone() == (1000.0 + len(sessions(*JAN)) - 1,)
        assert conn.execute("SELECT close FROM market.bars_monthly WHERE symbol = 'AAA' AND month_start = '2024-02-01'"
                            ).fetchone() == (100.0 + len(sessions(dt.date(2024, 1, 1), dt.date(2024, 2, 29))) - 1,)
    with pytest.raises(ValueError, match="after end"):
        timescale.refresh_rollups(wh, JAN[1], JAN[0])


ROLLUP_COLUMNS = ["symbol", "open", "high", "low", "close", "volume", "adj_open", "adj_high", "adj_low",
                  "adj_close", "adj_volume", "sessions", "first_session", "last_session"]


def rollup_rows(url: str, unit: str) -> pl.DataFrame:
    view = "market.bars_weekly" if unit == "week" else "market.bars_monthly"
    columns = ["symbol", f"{unit}_start", *ROLLUP_COLUMNS[1:]]
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM {view} ORDER BY symbol, {unit}_start").fetchall()
    return pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None).with_columns(
        pl.col("volume", "sessions").cast(pl.Int64), pl.col("adj_volume").cast(pl.Float64))


def aggregated_from_bars(url: str, unit: str) -> pl.DataFrame:
    """The oracle: every bucket aggregated in polars from what market.bars_daily holds now."""
    key = pl.col("session_date").dt.truncate("1w" if unit == "week" else "1mo").alias(f"{unit}_start")
    return (read_bars(url).sort("session_date").group_by("symbol", key).agg(
        pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
        pl.col("volume").sum(), pl.col("adj_open").first(), pl.col("adj_high").max(), pl.col("adj_low").min(),
        pl.col("adj_close").last(), pl.col("adj_volume").sum(), pl.len().cast(pl.Int64).alias("sessions"),
        pl.col("session_date").min().alias("first_session"), pl.col("session_date").max().alias("last_session"),
    ).sort("symbol", f"{unit}_start"))


def test_rollups_are_refreshed_per_window_and_equal_a_whole_aggregation(wh: str) -> None:
    """Windowed refreshes after reloads, a dropped symbol and two concurrent runs sharing a bucket
    leave every bucket equal to aggregating all of bars_daily; buckets outside a refreshed window
    are not rewritten (plain PostgreSQL: their rows keep their xmin)."""
    q1 = (dt.date(2024, 1, 1), dt.date(2024, 3, 31))
    load(wh, bars(["AAA", "BBB"], *q1), q1)
    timescale.refresh_rollups(wh, *q1)
    plain = not _timescale(wh)
    if plain:
        with psycopg.connect(wh) as conn:
            march_xmin = conn.execute("SELECT symbol, month_start, xmin::text FROM market.bars_monthly "
                                      "WHERE month_start = '2024-03-01' ORDER BY 1").fetchall()
    # January reloaded with BBB gone and AAA's prices changed: only the buckets covering January change.
    load(wh, bars(["AAA"], *JAN, base=500.0), JAN)
    timescale.refresh_rollups(wh, *JAN)
    for unit in ("week", "month"):
        assert rollup_rows(wh, unit).equals(aggregated_from_bars(wh, unit)), unit
    assert rollup_rows(wh, "month").filter(pl.col("symbol") == "BBB")["month_start"].to_list() == [
        dt.date(2024, 2, 1), dt.date(2024, 3, 1)]
    if plain:
        with psycopg.connect(wh) as conn:
            assert conn.execute("SELECT symbol, month_start, xmin::text FROM market.bars_monthly "
                                "WHERE month_start = '2024-03-01' ORDER BY 1").fetchall() == march_xmin

    # Two runs of a chunked backfill, loading and refreshing at once; the week of 2024-04-29 spans both.
    april, may = (dt.date(2024, 4, 1), dt.date(2024, 4, 30)), (dt.date(2024, 5, 1), dt.date(2024, 5, 31))
    errors: list[BaseException] = []

    def run(window: tuple[dt.date, dt.date], base: float) -> None:
        try:
            load(wh, bars(["AAA", "BBB"], *window, base=base), window, run_id=f"run-{window[0]}")
            timescale.refresh_rollups(wh, *window)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w, b)) for w, b in ((april, 200.0), (may, 300.0))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for unit in ("week", "month"):
        assert rollup_rows(wh, unit).equals(aggregated_from_bars(wh, unit)), unit
    week = rollup_rows(wh, "week").filter(pl.col("week_start") == dt.date(2024, 4, 29), pl.col("symbol") == "AAA")
    assert week.select("sessions", "first_session", "last_session").row(0) == (5, dt.date(2024, 4, 29), dt.date(2024, 5, 3))


def _timescale(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return timescale.timescale_installed(conn)


@pytest.mark.timescale
def test_timescale_reload_into_compressed_chunks(ts_wh: str) -> None:
    url = ts_wh
    original = bars(["AAA", "BBB"], *JAN)
    load(url, original, JAN)
    load(url, bars(["AAA", "BBB"], *FEB), FEB)
    with psycopg.connect(url, autocommit=True) as conn:
        compressed = conn.execute(
            "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('market.bars_daily') c"
        ).fetchone()
        assert compressed is not None and compressed[0] >= 1
        assert conn.execute(
            "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks WHERE hypertable_name = 'bars_daily'"
        ).fetchone() == (True,)
    replacement = bars(["AAA"], *JAN, base=321.0)
    result = load(url, replacement, JAN)
    assert result.rows == replacement.height
    assert read_bars(url, "session_date < '2024-02-01'").equals(replacement)
    assert read_bars(url, "session_date >= '2024-02-01'").equals(bars(["AAA", "BBB"], *FEB))
    timescale.refresh_rollups(url, *JAN)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT symbol, open FROM market.bars_monthly WHERE month_start = '2024-01-01'"
                            ).fetchall() == [("AAA", 320.5)]


def test_corporate_actions_hold_several_distributions_per_ex_date(wh: str) -> None:
    """0012 (issue 14): distribution_type is part of the key, and a split must say "split"."""
    from wealth_pipeline.core.schemas import CORPORATE_ACTIONS_SCHEMA

    day = dt.date(2004, 11, 15)
    rows = [("MSFT", day, "dividend", None, 3.00, "USD", "special"), ("MSFT", day, "dividend", None, 0.08, "USD", "regular"),
            ("MSFT", dt.date(2003, 2, 18), "split", 2.0, None, None, "split")]
    frame = pl.DataFrame(rows, schema=CORPORATE_ACTIONS_SCHEMA, orient="row")
    load_window(wh, "market.corporate_actions", frame, time_column="ex_date", window_start=dt.date(2003, 1, 1),
                window_end=dt.date(2004, 12, 31), asset="corporate_actions", partition_key="2004-11-15", run_id="r")
    with psycopg.connect(wh) as conn:
        stored = conn.execute("SELECT symbol, ex_date, action_type, ratio, amount, currency, distribution_type "
                              "FROM market.corporate_actions ORDER BY ex_date, amount DESC").fetchall()
    assert stored == [rows[2], rows[0], rows[1]]
    for bad in ([rows[0], rows[0]], [(*rows[2][:6], "regular")]):  # the same key twice; a "regular" split
        with pytest.raises(LoadError):
            load_window(wh, "market.corporate_actions", pl.DataFrame(bad, schema=CORPORATE_ACTIONS_SCHEMA, orient="row"),
                        time_column="ex_date", window_start=dt.date(2003, 1, 1), window_end=dt.date(2004, 12, 31),
                        asset="corporate_actions", partition_key="2004-11-15", run_id="r2")
    with psycopg.connect(wh) as conn:  # a refused load leaves the previous window
        assert conn.execute("SELECT count(*) FROM market.corporate_actions").fetchone() == (3,)
