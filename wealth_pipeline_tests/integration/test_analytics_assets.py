"""Indicators and factor exposures as assets: warm-up history, partition equivalence, true loadings."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import talib

from wealth_pipeline.providers.synthetic import SyntheticMarket
from wealth_pipeline_tests.integration.test_market_pipeline import ANALYTICS, Pipeline

pytestmark = pytest.mark.integration

# Without the planted lifecycle events (#21): these tests are about warm-up and loadings over full
# histories (every name listed throughout); an IPO's shorter history is covered by test_universe/test_symbol_master.
MARKET = {"synthetic_universe": 12, "synthetic_lifecycle": False}


@pytest.fixture(scope="module")
def backfilled(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Fourteen months of market data, indicators and exposures in one single-run backfill."""
    import uuid

    import psycopg
    from psycopg import sql

    from wealth_pipeline.environment import with_database
    from wealth_pipeline.warehouse import migrate

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_server_url, name)
    migrate.upgrade(url)
    pipeline = Pipeline(url, str(tmp_path_factory.mktemp("analytics") / "lake"), None, **MARKET)
    pipeline.run("2023-01-02", "2024-02-29", selection=ANALYTICS)
    return pipeline


def test_indicators_equal_talib_on_the_stored_adjusted_history(backfilled: Pipeline) -> None:
    bars = backfilled.lake.read_partitions("processed", "bars").filter(pl.col("symbol") == "MSFT").sort("session_date")
    stored = backfilled.lake.read_partitions("processed", "indicators").filter(pl.col("symbol") == "MSFT").sort("session_date")
    close = bars["adj_close"].to_numpy()
    # level indicators are stored on each session's price basis: TA-Lib on adj_close times cum_factor (#14)
    g = bars["cum_factor"].to_numpy()
    assert (g != 1.0).any(), "MSFT pays dividends in the range: the basis matters"
    np.testing.assert_allclose(stored["sma_200"].fill_null(np.nan).to_numpy(), talib.SMA(close, 200) * g, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(stored["rsi_14"].fill_null(np.nan).to_numpy(), talib.RSI(close, 14), rtol=1e-9, equal_nan=True)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2, 0)
    for column, oracle in (("bb_upper_20", upper), ("bb_middle_20", middle), ("bb_lower_20", lower)):
        np.testing.assert_allclose(stored[column].fill_null(np.nan).to_numpy(), oracle * g, rtol=1e-9, equal_nan=True)
    (rows,) = backfilled.query("SELECT count(*) FROM analytics.indicators_daily")[0:1]
    assert rows[0] == backfilled.lake.read_partitions("processed", "indicators").height


def test_one_partition_alone_equals_the_backfilled_partition(backfilled: Pipeline) -> None:
    day = dt.date(2024, 2, 15)
    before_ind = backfilled.lake.read_partition("processed", "indicators", day)
    before_exp = backfilled.lake.read_partition("processed", "factor_exposures", day)
    backfilled.run(str(day), selection="indicators factor_exposures")
    after_ind = backfilled.lake.read_partition("processed", "indicators", day)
    after_exp = backfilled.lake.read_partition("processed", "factor_exposures", day)
    for before, after in ((before_ind, after_ind), (before_exp, after_exp)):
        assert before.columns == after.columns and before.height == after.height > 0
        for column in before.columns:
            if before[column].dtype == pl.Float64:
                np.testing.assert_allclose(after[column].fill_null(np.nan).to_numpy(), before[column].fill_null(np.nan).to_numpy(),
                                           rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=column)
            else:
                assert after[column].to_list() == before[column].to_list(), column


def test_exposures_recover_the_synthetic_markets_true_loadings(backfilled: Pipeline) -> None:
    latest = backfilled.query(
        "SELECT symbol, beta_market, beta_size, beta_value, beta_momentum, n_obs FROM analytics.factor_exposures "
        "WHERE session_date = (SELECT max(session_date) FROM analytics.factor_exposures) AND beta_market IS NOT NULL")
    truth = {r["symbol"]: r for r in SyntheticMarket(seed=7, universe_size=12).true_loadings().to_dicts()}
    assert len(latest) >= 10
    errors = {f: [] for f in ("market", "size", "value", "momentum")}
    for symbol, bm, bs, bv, bmo, n_obs in latest:
        assert n_obs >= 200
        for factor, estimate in zip(errors, (bm, bs, bv, bmo), strict=True):
            errors[factor].append(abs(estimate - truth[symbol][f"beta_{factor}"]))
    # Tolerance: ~252 daily observations with 1-2.5% idiosyncratic noise give standard errors of about
    # 0.1 on the market beta and 0.2-0.3 on the long-short factors.
    assert np.median(errors["market"]) < 0.15
    assert max(np.median(errors[f]) for f in ("size", "value", "momentum")) < 0.35


def test_analytics_checks_pass_and_warmup_is_null(backfilled: Pipeline) -> None:
    first = backfilled.lake.read_partition("processed", "indicators", dt.date(2023, 1, 3))
    assert first["sma_20"].is_null().all(), "no SMA-20 on the second session of the history"
    late = backfilled.lake.read_partition("processed", "indicators", dt.date(2024, 2, 28))
    assert late.select(pl.all().exclude("symbol", "session_date").is_null().any()).row(0) == (False,) * (late.width - 2)
    exposures_early = backfilled.lake.read_partition("processed", "factor_exposures", dt.date(2023, 3, 1))
    assert exposures_early["beta_market"].is_null().all() and (exposures_early["n_obs"] < 126).all()

