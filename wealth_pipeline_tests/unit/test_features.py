"""Model features and labels: hand-computed values, cross-sectional normalization, no look-ahead."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import polars as pl
import pytest

from wealth_pipeline.core import adjustments, factor_models, features, indicators
from wealth_pipeline.providers.base import FACTORS, RISK_FREE_FACTOR
from wealth_pipeline.providers.synthetic import SyntheticMarket


def exposures_from(bars: pl.DataFrame, factor_returns: pl.DataFrame) -> pl.DataFrame:
    """Rolling exposures exactly as the analytics asset computes them (excess return on the factors)."""
    wide = factor_returns.pivot(on="factor", index="session_date", values="value").sort("session_date")
    excess = (
        bars.sort("symbol", "session_date")
        .with_columns((pl.col("adj_close") / pl.col("adj_close").shift(1).over("symbol") - 1).alias("r"))
        .join(wide.select("session_date", RISK_FREE_FACTOR), on="session_date")
        .select("symbol", "session_date", (pl.col("r") - pl.col(RISK_FREE_FACTOR)).alias("excess_return"))
    )
    return factor_models.rolling_factor_exposures(excess, wide.select("session_date", *FACTORS), factor_names=FACTORS)


@lru_cache(maxsize=8)
def synthetic_inputs(signal: float, universe: int, start: dt.date, end: dt.date, seed: int = 11
                     ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Adjusted bars, indicators and exposures of a synthetic market, built with the core modules."""
    market = SyntheticMarket(seed=seed, universe_size=universe, signal_strength=signal)
    raw = market.bars(start, end)  # point-in-time bars and session-basis indicators, as the pipeline stores them (#14)
    bars = adjustments.point_in_time(raw, adjustments.cumulate(adjustments.action_factors(raw, market.corporate_actions(start, end))))
    return bars, indicators.to_session_basis(indicators.compute_indicators(bars), bars), exposures_from(bars, market.factor_returns(start, end))


def _toy() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(8)]
    closes = {"A": [10, 11, 12, 13, 14, 15, 16, 17], "B": [20, 20, 21, 19, 22, 23, 21, 20], "C": [5, 6, 5, 6, 5, 6, 5, 6]}
    bars = pl.DataFrame({"symbol": [s for s in closes for _ in days], "session_date": days * 3,
                         "adj_close": [float(c) for s in closes for c in closes[s]]}).with_columns(pl.col("adj_close").alias("close"))
    ind = bars.select("symbol", "session_date").with_columns(
        [pl.lit(1.0).alias(c) for c in features.INDICATOR_INPUTS])
    exp = bars.select("symbol", "session_date").with_columns(
        [pl.lit(0.5).alias(c) for c in features.EXPOSURE_INPUTS])
    return bars, ind, exp


def test_forward_return_label_is_measured_strictly_after_the_feature_date() -> None:
    bars, _, _ = _toy()
    labels = features.forward_returns(bars.drop_nulls(), horizon=2).filter(pl.col("symbol") == "B").sort("session_date")
    # B closes 20, 20, 21, 19, 22, 23, 21, 20: label at day 0 = 21/20 - 1, ending on day 2.
    assert labels["fwd_return"].to_list()[:6] == pytest.approx([21 / 20 - 1, 19 / 20 - 1, 22 / 21 - 1, 23 / 19 - 1, 21 / 22 - 1, 20 / 23 - 1])
    assert labels["label_end"][0] == dt.date(2024, 1, 3)
    assert labels["fwd_return"][6:].to_list() == [None, None]
    # A gap: the label runs to the symbol's own 2nd next bar, not the 2nd next calendar day.
    gapped = features.forward_returns(bars.filter(~((pl.col("symbol") == "B") & (pl.col("session_date") == dt.date(2024, 1, 2)))), 2)
    row = gapped.filter((pl.col("symbol") == "B") & (pl.col("session_date") == dt.date(2024, 1, 1)))
    assert row["label_end"][0] == dt.date(2024, 1, 4) and row["fwd_return"][0] == pytest.approx(19 / 20 - 1)


def test_features_are_cross_sectional_z_scores_of_hand_computed_values() -> None:
    bars, ind, exp = _toy()
    training = features.build_training_set(bars, ind, exp, horizon=2)
    day = dt.date(2024, 1, 6)  # index 5: ret_5d = close[5] / close[0] - 1
    raw = np.array([15 / 10 - 1, 23 / 20 - 1, 6 / 5 - 1])
    z = (raw - raw.mean()) / raw.std()
    got = training.filter(pl.col("session_date") == day).sort("symbol")["ret_5d"].to_numpy()
    np.testing.assert_allclose(got, z, rtol=1e-12)
    # ret_20d/ret_60d need more history than 8 bars; constant indicators have no dispersion: null.
    row = training.filter(pl.col("session_date") == day)
    assert row["ret_20d"].is_null().all() and row["beta_market"].is_null().all() and row["rsi_14"].is_null().all()
    # The target is the cross-sectional z-score of the forward return; labels at the end are unavailable.
    fwd = np.array([17 / 15 - 1, 20 / 23 - 1, 6 / 6 - 1])
    np.testing.assert_allclose(row.sort("symbol")["target"].to_numpy(), (fwd - fwd.mean()) / fwd.std(), rtol=1e-12)
    tail = training.filter(pl.col("session_date") >= dt.date(2024, 1, 7))
    assert not tail["label_available"].any() and tail["target"].is_null().all()
    assert features.label_cutoff(bars, 2) == dt.date(2024, 1, 6)


def test_zscore_is_null_without_dispersion_and_clipped() -> None:
    frame = pl.DataFrame({"session_date": [1, 1, 1, 2, 3, 3] + [4] * 30,
                          "x": [1.0, 2.0, float("nan"), 5.0, 3.0, 3.0] + [0.0] * 29 + [1000.0]})
    z = features.cross_sectional_zscore(frame, ["x"])["x"].to_list()
    assert z[0] == pytest.approx(-1.0) and z[1] == pytest.approx(1.0) and z[2] is None  # NaN is missing
    assert z[3] is None and z[4] is None and z[5] is None  # one name; no dispersion
    assert z[-1] == features.ZSCORE_CLIP  # sqrt(29) ~ 5.39 is clipped


def test_bad_inputs_raise_naming_the_frame_and_row() -> None:
    bars, ind, exp = _toy()
    with pytest.raises(features.FeatureInputError, match=r"indicators: duplicate .* A 2024-01-01"):
        features.build_features(bars, pl.concat([ind, ind.head(1)]), exp)
    with pytest.raises(features.FeatureInputError, match=r"factor_exposures: missing column\(s\) \['beta_value'\]"):
        features.build_features(bars, ind, exp.drop("beta_value"))
    with pytest.raises(features.FeatureInputError, match=r"adj_close must be finite and > 0, got -1.0 for C 2024-01-08"):
        features.build_features(bars.with_columns(pl.when((pl.col("symbol") == "C") & (pl.col("session_date") == dt.date(2024, 1, 8)))
                                                  .then(-1.0).otherwise(pl.col("adj_close")).alias("adj_close")), ind, exp)
    with pytest.raises(features.FeatureInputError, match="horizon"):
        features.forward_returns(bars, 0)


def test_no_look_ahead_corrupting_everything_after_t_leaves_features_at_t_unchanged() -> None:
    start, end, t = dt.date(2021, 1, 4), dt.date(2022, 6, 30), dt.date(2022, 3, 15)
    bars, ind, exp = synthetic_inputs(0.1, 16, start, end)
    clean = features.build_training_set(bars, ind, exp, horizon=5)

    # Corrupt every bar after t (prices scrambled, some rows dropped, a new symbol appears) and recompute
    # indicators and exposures from the corrupted history, as the pipeline would.
    rng = np.random.default_rng(0)
    after = bars.filter(pl.col("session_date") > t)
    noise = pl.Series(rng.uniform(0.5, 2.0, after.height))
    price_cols = ["adj_open", "adj_high", "adj_low", "adj_close"]
    corrupted_after = after.with_columns([(pl.col(c) * noise).alias(c) for c in price_cols]).with_columns(
        pl.max_horizontal(price_cols).alias("adj_high"), pl.min_horizontal(price_cols).alias("adj_low")
    ).sample(fraction=0.8, seed=1)
    intruder = corrupted_after.filter(pl.col("symbol") == corrupted_after["symbol"][0]).with_columns(pl.lit("ZZZ").alias("symbol"))
    bad_bars = pl.concat([bars.filter(pl.col("session_date") <= t), corrupted_after, intruder])
    market = SyntheticMarket(seed=11, universe_size=16, signal_strength=0.1)
    factors = market.factor_returns(start, end)
    factors = factors.with_columns(pl.when(pl.col("session_date") > t).then(pl.col("value") * -3).otherwise(pl.col("value")).alias("value"))
    corrupted = features.build_training_set(bad_bars, indicators.to_session_basis(indicators.compute_indicators(bad_bars), bad_bars), exposures_from(bad_bars, factors), horizon=5)

    def upto(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("session_date") <= t).select(*features.KEY_COLUMNS, *features.FEATURE_COLUMNS)

    before, after_corruption = upto(clean), upto(corrupted)
    assert before.height == after_corruption.height > 3000
    assert after_corruption.select(features.KEY_COLUMNS).equals(before.select(features.KEY_COLUMNS))
    for column in features.FEATURE_COLUMNS:
        # Exact for everything but the exposures: the vectorized rolling OLS upstream lays all sessions
        # out in blocks, so its float rounding (~1e-14) depends on the input's length, not its values.
        np.testing.assert_allclose(after_corruption[column].fill_null(np.nan).to_numpy(),
                                   before[column].fill_null(np.nan).to_numpy(), rtol=1e-9, atol=1e-11,
                                   equal_nan=True, err_msg=column)
        assert after_corruption[column].is_null().to_list() == before[column].is_null().to_list(), column
    # The labels at t look forward by construction: the corruption does reach them (the test has teeth).
    at_t = lambda f: f.filter(pl.col("session_date") == t).sort("symbol")["fwd_return"]  # noqa: E731
    assert not np.allclose(at_t(clean).to_numpy(), at_t(corrupted).to_numpy())
    # Corrupting the stored indicator and exposure rows after t directly changes nothing at t either.
    scramble = lambda f: f.with_columns([pl.when(pl.col("session_date") > t).then(pl.col(c) * 7 + 1).otherwise(pl.col(c))  # noqa: E731
                                          .alias(c) for c in f.columns if f.schema[c] == pl.Float64])
    direct = features.build_training_set(bars, scramble(ind), scramble(exp), horizon=5)
    assert upto(direct).equals(upto(clean))
