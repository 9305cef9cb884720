"""The README's DuckDB query runs as printed against processed tables written by the lakehouse.

The block between ``<!-- duckdb-query -->`` markers in README.md is executed with
``WEALTH_LAKEHOUSE_URI`` pointing at a test lakehouse; its result is compared with the same join
done by polars on frames the test wrote (the oracle).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline_tests.integration.test_lakehouse import _weekdays

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_query() -> str:
    found = re.search(r"<!-- duckdb-query -->\s*```python\n(.*?)```\s*<!-- /duckdb-query -->", README.read_text(), re.S)
    assert found, "README.md lost its DuckDB query block"
    return found.group(1)


def test_readme_duckdb_query_reads_the_processed_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lakehouse.from_uri(str(tmp_path / "lake"))
    days = _weekdays(dt.date(2023, 12, 20), 160)  # 2023 and 2024 sessions
    symbols = ["AAPL", "MSFT", "TD.TO"]
    rng = np.random.default_rng(5)
    keys = {"symbol": [s for _ in days for s in symbols], "session_date": [d for d in days for _ in symbols]}
    bars = pl.DataFrame({**keys, "close": rng.uniform(10, 500, len(days) * 3)})
    indicators = pl.DataFrame({**keys, "rsi_14": rng.uniform(0, 100, len(days) * 3)}).filter(
        pl.col("symbol") != "TD.TO")  # an inner join: TD.TO has no indicators
    lake.write_window("processed", "bars", bars, "session_date", days[0], days[-1])
    lake.write_window("processed", "indicators", indicators, "session_date", days[0], days[-1])
    # A later restatement: the query sees the current version only.
    restated = bars.filter(pl.col("session_date") == days[-1]).with_columns(pl.col("close") + 1000)
    lake.write_partition("processed", "bars", restated, days[-1])
    bars = pl.concat([bars.filter(pl.col("session_date") != days[-1]), restated])

    monkeypatch.setenv("WEALTH_LAKEHOUSE_URI", str(tmp_path / "lake"))
    namespace: dict[str, object] = {}
    exec(compile(_readme_query(), "README.md:duckdb-query", "exec"), namespace)  # the README's code, as printed
    result = namespace["result"]
    assert isinstance(result, pl.DataFrame)

    expected = (bars.join(indicators, on=["symbol", "session_date"], how="inner")
                .filter(pl.col("session_date") >= dt.date(2024, 6, 3))
                .select("symbol", "session_date", "close", "rsi_14").sort("symbol", "session_date"))
    assert expected.height > 50 and set(expected["symbol"]) == {"AAPL", "MSFT"}
    assert result.equals(expected)
    assert result["close"].max() > 1000, "the restated session's current values"
