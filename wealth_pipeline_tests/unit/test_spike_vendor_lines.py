"""Spike rejects name the vendor file and line they came from, not the raw-tier version (issue 14).

A one-bar spike is judged in ``bars``, after the vendor file was parsed and kept in the raw tier, so
its reject is first traced to a raw parquet version and row. ``name_vendor_lines`` replaces that with
the landing file and line when the file's row holds the same values. The oracle for the line is the
file's text itself: the 1-based line holding the row.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from wealth_pipeline.core import bars as compute
from wealth_pipeline.core.schemas import CORPORATE_ACTIONS_SCHEMA
from wealth_pipeline.providers.landing import FILE_COLUMN, LINE_COLUMN, LandingZone, VendorFileProvider
from wealth_pipeline.providers.synthetic import SyntheticMarket

HEADER = "symbol,session_date,open,high,low,close,volume,currency\n"
DAYS = [dt.date(2024, 7, d) for d in (8, 9, 10, 11, 12)]
SPIKE_DAY = DAYS[2]


def _bar(symbol: str, day: dt.date, close: float) -> str:
    return f"{symbol},{day},{close},{close * 1.01:.4f},{close * 0.99:.4f},{close},1000,USD\n"


def _landing(tmp_path: Path, spike: float = 1201.0) -> tuple[VendorFileProvider, str]:
    (tmp_path / "bars").mkdir(exist_ok=True)
    (tmp_path / "bars" / "2024-07-09T2200Z-history.csv").write_text(
        HEADER + "".join(_bar(s, d, c) for d in DAYS[:2] for s, c in (("AAPL", 200.0), ("MSFT", 13.0))),
        encoding="utf-8",
    )
    # A rejected row (negative close) before the spike: its line is not its position among good rows + 1.
    text = (
        HEADER
        + f"AAPL,{DAYS[4]},-1,1,1,-1,10,USD\n"
        + _bar("AAPL", DAYS[3], 201.0)
        + _bar("AAPL", SPIKE_DAY, 200.5)
        + _bar("MSFT", SPIKE_DAY, spike)
        + "".join(_bar("MSFT", d, 13.1) for d in DAYS[3:])
    )
    name = "bars/2024-07-12T2200Z-late.csv"
    (tmp_path / name).write_text(text, encoding="utf-8")
    return VendorFileProvider(LandingZone.from_uri(str(tmp_path)), SyntheticMarket(universe_size=12)), name


def _line_of(path: Path, prefix: str) -> int:
    """The oracle: the last 1-based line of ``path`` starting with ``prefix`` (the row a later one supersedes)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return max(i for i, line in enumerate(lines, start=1) if line.startswith(prefix))


def _raw_tier(provider: VendorFileProvider) -> pl.DataFrame:
    """The rows as the raw tier keeps them: one version per day, ``source_file``/``source_row`` its row."""
    rows = provider.bars(DAYS[0], DAYS[-1]).sort("session_date", "symbol")
    return rows.with_columns(
        pl.lit("vendor").alias("source"),
        pl.format("/lake/raw/bars/date={}/v0001-abc.parquet", pl.col("session_date")).alias("source_file"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("session_date").alias("source_row"),
    )


def _delivered(provider: VendorFileProvider) -> pl.DataFrame:
    rows = provider.with_files("bars", DAYS[0], DAYS[-1])
    assert rows is not None
    return rows.with_columns(
        pl.col(FILE_COLUMN).map_elements(provider.landing.store.uri, return_dtype=pl.Utf8).alias("file"),
        pl.col(LINE_COLUMN).alias("line"),
    )


def _spike_reject(raw: pl.DataFrame) -> pl.DataFrame:
    universe = SyntheticMarket(universe_size=12).symbol_master()
    actions = pl.DataFrame(schema=CORPORATE_ACTIONS_SCHEMA)
    built = compute.build_bars(raw, actions, universe, SPIKE_DAY, SPIKE_DAY)
    spikes = built.rejects.filter((pl.col("field") == "close") & (pl.col("symbol") == "MSFT"))
    assert spikes.height == 1 and spikes["session_date"][0] == SPIKE_DAY
    assert spikes["source_file"][0].startswith("/lake/raw/bars/"), "traced to the raw tier first"
    return built.rejects


def test_landing_rows_carry_the_line_they_were_read_from(tmp_path: Path) -> None:
    provider, name = _landing(tmp_path)
    rows = provider.with_files("bars", DAYS[0], DAYS[-1])
    assert rows is not None
    for symbol, day, file, line in rows.select(
        "symbol", "session_date", FILE_COLUMN, LINE_COLUMN
    ).iter_rows():
        assert line == _line_of(tmp_path / file, f"{symbol},{day},"), (symbol, day, file)
    spike = rows.filter((pl.col("symbol") == "MSFT") & (pl.col("session_date") == SPIKE_DAY))
    assert spike[FILE_COLUMN].to_list() == [name] and spike[LINE_COLUMN].to_list() == [5]
    assert provider.merged("bars")[0].columns == provider.bars(DAYS[0], DAYS[-1]).columns, (
        "merged keeps its schema"
    )


def test_a_spike_reject_names_the_vendor_file_and_line(tmp_path: Path) -> None:
    provider, name = _landing(tmp_path)
    raw = _raw_tier(provider)
    rejects = compute.name_vendor_lines(_spike_reject(raw), raw, _delivered(provider))
    spike = rejects.filter((pl.col("field") == "close") & (pl.col("symbol") == "MSFT")).row(0, named=True)
    assert spike["source_file"] == provider.landing.store.uri(name)
    assert spike["source_row"] == _line_of(tmp_path / name, f"MSFT,{SPIKE_DAY},")
    assert "20x" in spike["reason"] and spike["value"] == "1201.0"
    assert rejects.columns == _spike_reject(raw).columns, "same columns as the traced rejects"


def test_a_reject_whose_file_row_was_corrected_since_keeps_its_raw_location(tmp_path: Path) -> None:
    provider, _ = _landing(tmp_path)
    raw = _raw_tier(provider)
    rejects = _spike_reject(raw)
    # A correction delivered after the raw tier kept the spike: the landing row is no longer the raw row.
    (tmp_path / "bars" / "2024-07-13T0900Z-fix.csv").write_text(
        HEADER + _bar("MSFT", SPIKE_DAY, 13.05), encoding="utf-8"
    )
    corrected = VendorFileProvider(LandingZone.from_uri(str(tmp_path)), SyntheticMarket(universe_size=12))
    assert compute.name_vendor_lines(rejects, raw, _delivered(corrected)).equals(rejects)
    # Without landing rows (another provider) the rejects are unchanged too.
    assert compute.name_vendor_lines(rejects, raw, _delivered(corrected).clear()).equals(rejects)
