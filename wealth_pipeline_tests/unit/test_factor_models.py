"""Rolling factor regressions against statsmodels (RollingOLS and plain OLS) and hand-computed cases."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from numpy.testing import assert_allclose, assert_array_equal
from statsmodels.regression.rolling import RollingOLS

from wealth_pipeline.core.factor_models import (
    DEFAULT_FACTORS,
    FACTOR_EXPOSURE_COLUMNS,
    FactorModelInputError,
    factor_exposure_columns,
    factor_exposure_schema,
    portfolio_exposures,
    rolling_factor_exposures,
    rolling_window_sums,
)

FACTORS = list(DEFAULT_FACTORS)
PARAM_COLUMNS = ["alpha", *[f"beta_{name}" for name in FACTORS]]
TOL = 1e-8
SQRT252 = math.sqrt(252)


def _dates(n: int, start: dt.date = dt.date(2010, 1, 4)) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def _factor_frame(dates: list[dt.date], matrix: np.ndarray, names: list[str] = FACTORS) -> pl.DataFrame:
    return pl.DataFrame({"session_date": dates, **{name: matrix[:, j] for j, name in enumerate(names)}})


def _returns_frame(dates: list[dt.date], y: np.ndarray, symbols: list[str]) -> pl.DataFrame:
    """Long returns from a dense (sessions x symbols) matrix; every cell becomes a row (NaN kept)."""
    return pl.DataFrame(
        {
            "symbol": np.repeat(np.array(symbols), len(dates)),
            "session_date": pl.Series(dates * len(symbols), dtype=pl.Date),
            "excess_return": y.T.reshape(-1),
        }
    )


def _simulate(
    sessions: int, symbols: int, seed: int, noise: float = 0.015, offset: float = 0.03
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factors with drifts and a momentum ``offset`` (to stress cancellation), true alpha and betas
    (columns alpha, betas), and excess returns (sessions x symbols)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0, 1.0, (sessions, 4)) * np.array([0.011, 0.006, 0.005, 0.008])
    factors[:, 1] += 0.4 * factors[:, 0]  # correlated factors
    factors += np.array([0.0004, 0.0001, -0.0002, offset])  # momentum with a large offset
    betas = np.column_stack([rng.normal(1.0, 0.3, symbols), rng.normal(0.0, 0.6, (symbols, 3))])
    alphas = rng.normal(0.0001, 0.0002, symbols)
    y = alphas + factors @ betas.T + rng.normal(0.0, noise, (sessions, symbols))
    return factors, np.column_stack([alphas, betas]), y


def _statsmodels_rolling(y: np.ndarray, factors: np.ndarray, expanding: bool) -> dict[str, np.ndarray]:
    res = RollingOLS(
        y, sm.add_constant(factors), window=252, min_nobs=126, missing="drop", expanding=expanding
    ).fit(method="pinv")
    return {
        "params": res.params,
        "r_squared": np.asarray(res.rsquared),
        "residual_vol": np.sqrt(res.ssr / res.df_resid) * SQRT252,
        "n_obs": np.asarray(res.nobs),
    }


def _ours(out: pl.DataFrame, symbol: str) -> pl.DataFrame:
    return out.filter(pl.col("symbol") == symbol).sort("session_date")


def _as_float(frame: pl.DataFrame, columns: list[str] | str) -> np.ndarray:
    return frame.select(columns).fill_null(float("nan")).to_numpy().astype(float).squeeze()


# ------------------------------------------------------------------------------------------------
# Equality with statsmodels
# ------------------------------------------------------------------------------------------------


def test_output_schema_and_columns() -> None:
    assert FACTOR_EXPOSURE_COLUMNS == (
        "symbol",
        "session_date",
        "alpha",
        "beta_market",
        "beta_size",
        "beta_value",
        "beta_momentum",
        "r_squared",
        "residual_vol",
        "n_obs",
    )
    assert factor_exposure_columns(["mkt"]) == [
        "symbol",
        "session_date",
        "alpha",
        "beta_mkt",
        "r_squared",
        "residual_vol",
        "n_obs",
    ]
    factors, _, y = _simulate(300, 2, seed=1)
    dates = _dates(300)
    out = rolling_factor_exposures(_returns_frame(dates, y, ["A", "B"]), _factor_frame(dates, factors))
    assert out.schema == pl.Schema(factor_exposure_schema())
    assert out.height == 600
    assert out["session_date"].is_sorted() is False  # sorted by symbol first
    assert out.select("symbol", "session_date").equals(
        out.select("symbol", "session_date").sort("symbol", "session_date")
    )


def test_matches_statsmodels_rolling_ols_on_a_long_complete_history() -> None:
    """2,600 sessions (beyond 10 years): params, R², residual std equal RollingOLS to 1e-8."""
    sessions = 2600
    factors, _, y = _simulate(sessions, 3, seed=11)
    dates = _dates(sessions)
    symbols = ["AAA", "BBB", "CCC"]
    out = rolling_factor_exposures(_returns_frame(dates, y, symbols), _factor_frame(dates, factors))
    assert out.height == sessions * 3
    for i, symbol in enumerate(symbols):
        mine = _ours(out, symbol)
        params = _as_float(mine, PARAM_COLUMNS)
        # Plain rolling windows: statsmodels starts at the first full window.
        ref = _statsmodels_rolling(y[:, i], factors, expanding=False)
        full = slice(251, None)
        assert np.isfinite(ref["params"][full]).all()
        assert_allclose(params[full], ref["params"][full], rtol=0, atol=TOL)
        assert_allclose(_as_float(mine, "r_squared")[full], ref["r_squared"][full], rtol=0, atol=TOL)
        assert_allclose(_as_float(mine, "residual_vol")[full], ref["residual_vol"][full], rtol=0, atol=TOL)
        assert_array_equal(mine["n_obs"].to_numpy()[full], np.full(sessions - 251, 252))
        # Before a full window exists our windows are truncated, exactly like expanding=True.
        ref = _statsmodels_rolling(y[:, i], factors, expanding=True)
        assert_array_equal(np.isnan(params), np.isnan(ref["params"]))
        assert np.isnan(params[:125]).all() and np.isfinite(params[125:]).all()
        assert_allclose(params[125:251], ref["params"][125:251], rtol=0, atol=TOL)
        assert_array_equal(mine["n_obs"].to_numpy()[:251], np.arange(1, 252))


def test_missing_observations_shrink_the_window_like_statsmodels_drop() -> None:
    """NaN values, null values, absent rows, a long gap and a NaN factor session are all dropped."""
    sessions = 900
    factors, _, y = _simulate(sessions, 4, seed=5)
    factors[400, 2] = np.nan  # one factor missing on one session: no observation for anyone
    rng = np.random.default_rng(99)
    y[rng.random(y.shape) < 0.08] = np.nan
    y[300:520, 1] = np.nan  # a 220-session gap: windows fall below min_obs for a while
    y[:150, 2] = np.nan  # late listing
    dates = _dates(sessions)
    symbols = ["G0", "G1", "G2", "G3"]
    returns = _returns_frame(dates, y, symbols)
    # Make half of the missing cells absent rows and a few others nulls instead of NaN.
    returns = returns.with_row_index("_i").filter(
        pl.col("excess_return").is_not_nan() | (pl.col("_i") % 2 == 0)
    )
    returns = returns.with_columns(
        pl.when(pl.col("excess_return").is_nan() & (pl.col("_i") % 4 == 0))
        .then(None)
        .otherwise(pl.col("excess_return"))
        .alias("excess_return")
    ).drop("_i")
    out = rolling_factor_exposures(returns, _factor_frame(dates, factors))
    # One output row per input row (all dates are factor sessions), nulls in the input included.
    assert out.height == returns.height
    date_pos = {d: t for t, d in enumerate(dates)}
    for i, symbol in enumerate(symbols):
        mine = _ours(out, symbol)
        rows = np.array([date_pos[d] for d in mine["session_date"].to_list()])
        ref = _statsmodels_rolling(y[:, i], factors, expanding=True)
        params = _as_float(mine, PARAM_COLUMNS)
        assert_array_equal(np.isnan(params), np.isnan(ref["params"][rows]))
        assert_allclose(params, ref["params"][rows], rtol=0, atol=TOL)
        assert_allclose(_as_float(mine, "r_squared"), ref["r_squared"][rows], rtol=0, atol=TOL)
        assert_allclose(_as_float(mine, "residual_vol"), ref["residual_vol"][rows], rtol=0, atol=TOL)
        # Our n_obs is filled even where no estimate is made: check it by counting.
        valid = np.isfinite(y[:, i]) & np.isfinite(factors).all(axis=1)
        counts = np.array([valid[max(0, t - 251) : t + 1].sum() for t in rows])
        assert_array_equal(mine["n_obs"].to_numpy(), counts)
    gap = _ours(out, "G1").filter(pl.col("session_date") == dates[600])
    assert gap["n_obs"].item() < 126 and gap["alpha"].item() is None


def test_rows_equal_plain_ols_on_the_valid_rows_of_their_window() -> None:
    """Each checked row equals statsmodels OLS fitted on exactly that window's valid observations."""
    sessions = 700
    factors, _, y = _simulate(sessions, 1, seed=8)
    y = y[:, 0]
    y[np.random.default_rng(3).random(sessions) < 0.15] = np.nan
    y[350:460] = np.nan
    dates = _dates(sessions)
    out = rolling_factor_exposures(_returns_frame(dates, y[:, None], ["X"]), _factor_frame(dates, factors))
    by_date = {row["session_date"]: row for row in out.iter_rows(named=True)}
    checked = nulls = 0
    for t in [130, 200, 251, 252, 300, 349, 460, 520, 560, 600, 699]:
        row = by_date[dates[t]]
        lo = max(0, t - 251)
        window_y, window_x = y[lo : t + 1], factors[lo : t + 1]
        keep = np.isfinite(window_y)
        assert row["n_obs"] == keep.sum()
        if keep.sum() < 126:
            assert row["alpha"] is None and row["r_squared"] is None and row["residual_vol"] is None
            nulls += 1
            continue
        fit = sm.OLS(window_y[keep], sm.add_constant(window_x[keep])).fit()
        mine = [row[c] for c in PARAM_COLUMNS]
        assert_allclose(mine, fit.params, rtol=0, atol=TOL)
        assert row["r_squared"] == pytest.approx(fit.rsquared, abs=TOL)
        assert row["residual_vol"] == pytest.approx(math.sqrt(fit.ssr / fit.df_resid) * SQRT252, abs=TOL)
        checked += 1
    assert (checked, nulls) == (6, 5)  # 130, 460, 520, 560, 600 lack 126 valid observations


def test_window_and_min_obs_are_respected() -> None:
    sessions = 200
    factors, _, y = _simulate(sessions, 1, seed=21)
    dates = _dates(sessions)
    out = rolling_factor_exposures(
        _returns_frame(dates, y, ["W"]), _factor_frame(dates, factors), window=60, min_obs=40
    )
    ref = RollingOLS(y[:, 0], sm.add_constant(factors), window=60, min_nobs=40, expanding=True).fit(
        method="pinv"
    )
    params = _as_float(out, PARAM_COLUMNS)
    assert np.isnan(params[:39]).all() and np.isfinite(params[39:]).all()
    assert_allclose(params, ref.params, rtol=0, atol=TOL)
    assert out["n_obs"].max() == 60


def test_single_factor_model() -> None:
    sessions = 300
    factors, _, y = _simulate(sessions, 1, seed=2)
    dates = _dates(sessions)
    frame = _factor_frame(dates, factors[:, :1], ["market"])
    out = rolling_factor_exposures(_returns_frame(dates, y, ["S"]), frame, factor_names=["market"])
    assert out.columns == factor_exposure_columns(["market"])
    ref = _statsmodels_rolling(y[:, 0], factors[:, :1], expanding=True)
    assert_allclose(_as_float(out, ["alpha", "beta_market"]), ref["params"], rtol=0, atol=TOL)


# ------------------------------------------------------------------------------------------------
# Recovery of known loadings, precision, partition consistency
# ------------------------------------------------------------------------------------------------


def test_recovers_true_loadings() -> None:
    """Low-noise simulation (seed 123), full 252-session windows: every beta within 0.08 of the truth
    (~6 standard errors: noise 0.002 / factor sd ~0.006 / sqrt(252) ~ 0.013), alpha within 8e-4
    (~6 standard errors: 0.002 / sqrt(252)), residual vol within 15% of the true noise."""
    sessions, symbols, noise = 1200, 20, 0.002
    factors, truth, y = _simulate(sessions, symbols, seed=123, noise=noise, offset=0.0)
    dates = _dates(sessions)
    names = [f"S{i:02d}" for i in range(symbols)]
    out = rolling_factor_exposures(_returns_frame(dates, y, names), _factor_frame(dates, factors))
    full = out.filter(pl.col("n_obs") == 252)
    assert full.height == symbols * (sessions - 251)
    for i, name in enumerate(names):
        mine = _ours(full, name)
        estimates = _as_float(mine, PARAM_COLUMNS)
        assert np.abs(estimates[:, 1:] - truth[i, 1:]).max() < 0.08
        assert np.abs(estimates[:, 0] - truth[i, 0]).max() < 8e-4
        vol = mine["residual_vol"].to_numpy()
        assert np.abs(vol / (noise * SQRT252) - 1).max() < 0.15
        assert mine["r_squared"].min() > 0.5


def test_window_sums_stay_exact_over_long_histories() -> None:
    """Re-anchored cumulative sums: no loss of digits after 5,000 rows of large values."""
    rng = np.random.default_rng(4)
    values = 1e6 + rng.normal(0, 1, (5000, 3))
    window = 252
    sums = rolling_window_sums(values, window)
    for t in [0, 100, 251, 252, 2519, 2520, 4000, 4999]:
        expected = [math.fsum(values[max(0, t - window + 1) : t + 1, j]) for j in range(3)]
        assert_allclose(sums[t], expected, rtol=1e-14, atol=0)


def test_a_partition_with_lookback_equals_the_same_dates_in_a_long_backfill() -> None:
    sessions = 1500
    factors, _, y = _simulate(sessions, 3, seed=31)
    dates = _dates(sessions)
    symbols = ["P", "Q", "R"]
    full = rolling_factor_exposures(_returns_frame(dates, y, symbols), _factor_frame(dates, factors))
    first = 1400
    lo = first - 251  # window - 1 sessions of lookback
    part = rolling_factor_exposures(
        _returns_frame(dates[lo:], y[lo:], symbols), _factor_frame(dates[lo:], factors[lo:])
    ).filter(pl.col("session_date") >= dates[first])
    expected = full.filter(pl.col("session_date") >= dates[first])
    assert part.select("symbol", "session_date", "n_obs").equals(
        expected.select("symbol", "session_date", "n_obs")
    )
    columns = [*PARAM_COLUMNS, "r_squared", "residual_vol"]
    assert_allclose(_as_float(part, columns), _as_float(expected, columns), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Edge cases
# ------------------------------------------------------------------------------------------------


def test_fewer_than_min_obs_gives_null_estimates_but_keeps_rows() -> None:
    sessions = 400
    factors, _, y = _simulate(sessions, 2, seed=6)
    dates = _dates(sessions)
    y[:, 1] = np.nan
    y[::3, 1] = 0.001 * np.arange(len(y[::3, 1]))  # one observation every 3 sessions: at most 84 per window
    out = rolling_factor_exposures(_returns_frame(dates, y, ["OK", "THIN"]), _factor_frame(dates, factors))
    thin = _ours(out, "THIN")
    assert thin.height == sessions
    assert (
        thin.select(pl.col([*PARAM_COLUMNS, "r_squared", "residual_vol"]).is_null().all()).row(0)
        == (True,) * 7
    )
    assert thin["n_obs"].max() == 84
    assert thin["n_obs"][0] == 1 and thin["n_obs"][2] == 1 and thin["n_obs"][3] == 2
    ok = _ours(out, "OK")
    assert ok["alpha"].null_count() == 125


def test_security_shorter_than_min_obs_in_total() -> None:
    sessions = 300
    factors, _, y = _simulate(sessions, 1, seed=7)
    dates = _dates(sessions)
    returns = _returns_frame(dates[200:300], y[200:300], ["NEW"])
    out = rolling_factor_exposures(returns, _factor_frame(dates, factors))
    assert out.height == 100
    assert out["alpha"].null_count() == 100
    assert out["n_obs"].to_list() == list(range(1, 101))


def test_constant_factor_window_gives_nulls_not_garbage() -> None:
    sessions = 900
    factors, _, y = _simulate(sessions, 1, seed=9)
    factors[300:700, 2] = 0.0  # "value" flat for 400 sessions
    dates = _dates(sessions)
    out = _ours(rolling_factor_exposures(_returns_frame(dates, y, ["C"]), _factor_frame(dates, factors)), "C")
    alpha = _as_float(out, "alpha")
    # Windows entirely inside the flat stretch (ending at 551..699) are singular.
    assert np.isnan(alpha[551:700]).all()
    assert np.isfinite(alpha[300:551]).all() and np.isfinite(alpha[700:]).all()
    assert_array_equal(out["n_obs"].to_numpy()[551:700], np.full(149, 252))
    # Just outside the flat stretch the fit is regular and equals plain OLS.
    t = 700
    fit = sm.OLS(y[t - 251 : t + 1, 0], sm.add_constant(factors[t - 251 : t + 1])).fit()
    assert_allclose(_as_float(out, PARAM_COLUMNS)[t], fit.params, rtol=0, atol=TOL)


def test_collinear_factors_give_nulls() -> None:
    sessions = 700
    factors, _, y = _simulate(sessions, 1, seed=10)
    factors[200:500, 1] = 2.0 * factors[200:500, 0] - 0.001  # size is an exact function of market
    dates = _dates(sessions)
    out = _ours(rolling_factor_exposures(_returns_frame(dates, y, ["K"]), _factor_frame(dates, factors)), "K")
    beta = _as_float(out, "beta_size")
    assert np.isnan(beta[451:500]).all()
    assert np.isfinite(beta[125:451]).all() and np.isfinite(beta[500:]).all()


def test_constant_return_has_null_r_squared_and_zero_betas() -> None:
    sessions = 300
    factors, _, _ = _simulate(sessions, 1, seed=12)
    dates = _dates(sessions)
    y = np.full((sessions, 1), 0.0005)
    out = rolling_factor_exposures(_returns_frame(dates, y, ["FLAT"]), _factor_frame(dates, factors))
    last = out.row(-1, named=True)
    assert last["r_squared"] is None
    assert last["alpha"] == pytest.approx(0.0005, abs=1e-12)
    assert all(abs(last[f"beta_{name}"]) < 1e-10 for name in FACTORS)
    assert last["residual_vol"] == pytest.approx(0.0, abs=1e-10)


def test_returns_outside_the_factor_calendar_are_left_out() -> None:
    sessions = 200
    factors, _, y = _simulate(sessions, 1, seed=13)
    dates = _dates(sessions)
    returns = _returns_frame(dates, y, ["T"])
    holiday = pl.DataFrame(
        {"symbol": ["T"], "session_date": [dates[-1] + dt.timedelta(days=1)], "excess_return": [0.01]}
    )
    out = rolling_factor_exposures(pl.concat([returns, holiday]), _factor_frame(dates, factors))
    assert out.height == sessions
    assert out["session_date"].max() == dates[-1]


def test_empty_returns_give_an_empty_frame_with_the_schema() -> None:
    factors, _, _ = _simulate(10, 1, seed=14)
    empty = pl.DataFrame(schema={"symbol": pl.Utf8, "session_date": pl.Date, "excess_return": pl.Float64})
    out = rolling_factor_exposures(empty, _factor_frame(_dates(10), factors))
    assert out.height == 0 and out.schema == pl.Schema(factor_exposure_schema())


def test_bad_inputs_raise_clear_errors() -> None:
    factors, _, y = _simulate(50, 1, seed=15)
    dates = _dates(50)
    f = _factor_frame(dates, factors)
    r = _returns_frame(dates, y, ["E"])
    with pytest.raises(FactorModelInputError, match=r"returns: missing columns \['excess_return'\]"):
        rolling_factor_exposures(r.drop("excess_return"), f)
    with pytest.raises(FactorModelInputError, match=r"factors: missing columns \['momentum'\]"):
        rolling_factor_exposures(r, f.drop("momentum"))
    with pytest.raises(
        FactorModelInputError, match=r"returns rows 3 and 50: duplicate \(symbol, session_date\)"
    ):
        rolling_factor_exposures(pl.concat([r, r[3]]), f)
    with pytest.raises(
        FactorModelInputError, match=r"factors rows 7 and 50: duplicate session_date 2010-01-11"
    ):
        rolling_factor_exposures(r, pl.concat([f, f[7]]))
    bad = r.with_columns(
        pl.when(pl.int_range(pl.len()) == 9)
        .then(float("inf"))
        .otherwise("excess_return")
        .alias("excess_return")
    )
    with pytest.raises(FactorModelInputError, match=r"returns row 9: field 'excess_return' is infinite"):
        rolling_factor_exposures(bad, f)
    bad_f = f.with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(float("-inf")).otherwise("size").alias("size")
    )
    with pytest.raises(FactorModelInputError, match=r"factors row 4: field 'size' is infinite"):
        rolling_factor_exposures(r, bad_f)
    with pytest.raises(FactorModelInputError, match=r"returns row 2: field 'symbol' is null"):
        rolling_factor_exposures(
            r.with_columns(
                pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise("symbol").alias("symbol")
            ),
            f,
        )
    with pytest.raises(FactorModelInputError, match=r"session_date' must be pl\.Date"):
        rolling_factor_exposures(r.with_columns(pl.col("session_date").cast(pl.Datetime)), f)
    with pytest.raises(FactorModelInputError, match="min_obs must be an int between"):
        rolling_factor_exposures(r, f, min_obs=5)
    with pytest.raises(FactorModelInputError, match="min_obs must be an int between"):
        rolling_factor_exposures(r, f, window=100, min_obs=101)
    with pytest.raises(FactorModelInputError, match="factor_names is empty"):
        rolling_factor_exposures(r, f, factor_names=[])
    with pytest.raises(FactorModelInputError, match="must be numeric"):
        rolling_factor_exposures(r.with_columns(pl.col("excess_return").cast(pl.Utf8)), f)


# ------------------------------------------------------------------------------------------------
# Portfolio exposures
# ------------------------------------------------------------------------------------------------


def test_portfolio_exposures_hand_computed() -> None:
    d1, d2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    exposures = pl.DataFrame(
        {
            "symbol": ["A", "B", "C", "A", "B", "C"],
            "session_date": [d1, d1, d1, d2, d2, d2],
            "alpha": [0.001, 0.002, 0.0, 0.001, None, 0.0],
            "beta_market": [1.2, 0.8, 1.0, 1.1, None, 1.5],
            "beta_size": [0.5, -0.5, 0.0, 0.4, None, 0.0],
            "r_squared": [0.5, 0.4, 0.3, 0.5, None, 0.3],
            "residual_vol": [0.2, 0.3, 0.1, 0.2, None, 0.1],
            "n_obs": [252, 252, 252, 252, 100, 252],
        }
    )
    weights = pl.DataFrame(
        {
            "portfolio_id": ["P1", "P1", "P1", "P1", "P2", "P2", "P3"],
            "symbol": ["A", "B", "A", "B", "A", "C", "ZZZ"],
            "session_date": [d1, d1, d2, d2, d1, d1, d1],
            "weight": [0.6, 0.4, 0.5, 0.5, 1.3, -0.3, 1.0],
        }
    )
    out = portfolio_exposures(weights, exposures)
    assert out.columns == [
        "portfolio_id",
        "session_date",
        "alpha",
        "beta_market",
        "beta_size",
        "coverage",
        "n_holdings",
        "n_covered",
    ]
    rows = {(r["portfolio_id"], r["session_date"]): r for r in out.iter_rows(named=True)}
    assert len(rows) == 4
    p1d1 = rows["P1", d1]  # fully covered: plain weighted sums
    assert p1d1["beta_market"] == pytest.approx(0.6 * 1.2 + 0.4 * 0.8)
    assert p1d1["beta_size"] == pytest.approx(0.6 * 0.5 - 0.4 * 0.5)
    assert p1d1["alpha"] == pytest.approx(0.6 * 0.001 + 0.4 * 0.002)
    assert (p1d1["coverage"], p1d1["n_holdings"], p1d1["n_covered"]) == (pytest.approx(1.0), 2, 2)
    p1d2 = rows["P1", d2]  # B has no estimate on d2: A alone, scaled to the whole book
    assert p1d2["beta_market"] == pytest.approx(0.5 * 1.1 / 0.5)
    assert p1d2["beta_size"] == pytest.approx(0.4)
    assert (p1d2["coverage"], p1d2["n_holdings"], p1d2["n_covered"]) == (pytest.approx(0.5), 2, 1)
    p2 = rows["P2", d1]  # a short leg: net weighted sums, coverage on gross weight
    assert p2["beta_market"] == pytest.approx(1.3 * 1.2 - 0.3 * 1.0)
    assert p2["beta_size"] == pytest.approx(1.3 * 0.5)
    assert p2["coverage"] == pytest.approx(1.0)
    p3 = rows["P3", d1]  # nothing covered
    assert p3["beta_market"] is None and p3["alpha"] is None
    assert (p3["coverage"], p3["n_holdings"], p3["n_covered"]) == (0.0, 1, 0)


def test_portfolio_exposures_bad_inputs() -> None:
    d1 = dt.date(2024, 1, 2)
    exposures = pl.DataFrame({"symbol": ["A"], "session_date": [d1], "alpha": [0.0], "beta_market": [1.0]})
    weights = pl.DataFrame(
        {"portfolio_id": ["P", "P"], "symbol": ["A", "A"], "session_date": [d1, d1], "weight": [0.5, 0.5]}
    )
    with pytest.raises(
        FactorModelInputError,
        match=r"weights rows 0 and 1: duplicate \(portfolio_id, symbol, session_date\) = \('P', 'A', 2024-01-02\)",
    ):
        portfolio_exposures(weights, exposures)
    with pytest.raises(
        FactorModelInputError, match=r"exposures rows 0 and 1: duplicate \(symbol, session_date\)"
    ):
        portfolio_exposures(weights[:1], pl.concat([exposures, exposures]))
    with pytest.raises(FactorModelInputError, match=r"weights: missing columns \['weight'\]"):
        portfolio_exposures(weights.drop("weight"), exposures)
    with pytest.raises(FactorModelInputError, match=r"weights row 0: field 'weight' is null"):
        portfolio_exposures(
            weights[:1].with_columns(pl.lit(None, dtype=pl.Float64).alias("weight")), exposures
        )
    with pytest.raises(FactorModelInputError, match="no beta_<factor> columns"):
        portfolio_exposures(weights[:1], exposures.drop("beta_market"))
