"""Rolling multi-factor regressions (alpha, betas, R², residual volatility) for a whole universe at once.

For every security and every session the model is the ordinary least squares fit

    excess_return[s] = alpha + sum_f beta_f * factor_f[s] + e[s]

over the last ``window`` sessions of the *factor calendar* (the dates of the factor frame) ending at
that session. Sessions where the security has no usable return (missing row, null or NaN) or where any
factor is null/NaN are dropped from the window, so a security's gaps shrink its window instead of
poisoning it. This is exactly what ``statsmodels.regression.rolling.RollingOLS(y, add_constant(X),
window=window, min_nobs=min_obs, missing="drop", expanding=True)`` computes when ``y`` is the security's
return series reindexed to the factor calendar (NaN where missing); the unit tests hold us to it.

How it is fast: all securities are laid out on a dense (sessions x symbols) grid with a validity mask,
the rolling sums of the cross-products (n, X, X'X, y, X'y, y'y) are taken along the session axis, and
the small normal-equation systems of every (session, symbol) pair are solved together with a
vectorized Cholesky factorization. How it stays accurate: the data are standardized by full-history
means and standard deviations first, the window sums are computed from cumulative sums that restart
every ``window`` sessions (so no sum spans more than two windows and long histories do not lose
digits to cancellation), and each system is solved on the window-centered correlation matrix of the
factors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

DEFAULT_FACTORS: tuple[str, ...] = ("market", "size", "value", "momentum")
TRADING_DAYS_PER_YEAR = 252

# A factor whose standard deviation inside a window is below this fraction of its full-history standard
# deviation counts as constant in that window (the regression is then singular and yields nulls).
CONSTANT_FACTOR_REL_STD = 1e-6
# Cholesky pivot of the window's factor correlation matrix below which the factors count as collinear:
# the pivot is 1 - R² of one factor regressed on the previous ones, so 1e-10 means R² > 1 - 1e-10.
COLLINEAR_PIVOT_TOL = 1e-10
# Cells of the dense (sessions x symbols) grid processed per chunk, to bound memory.
_CHUNK_CELLS = 25_000


class FactorModelInputError(ValueError):
    """Input frames that the factor regressions cannot use (missing columns, duplicates, bad values)."""


def factor_exposure_columns(factor_names: Sequence[str] = DEFAULT_FACTORS) -> list[str]:
    """Output columns of :func:`rolling_factor_exposures` for ``factor_names``, in order."""
    return [
        "symbol",
        "session_date",
        "alpha",
        *[f"beta_{name}" for name in factor_names],
        "r_squared",
        "residual_vol",
        "n_obs",
    ]


FACTOR_EXPOSURE_COLUMNS: tuple[str, ...] = tuple(factor_exposure_columns())


def factor_exposure_schema(factor_names: Sequence[str] = DEFAULT_FACTORS) -> dict[str, pl.DataType]:
    """Column name -> polars dtype of :func:`rolling_factor_exposures` output for ``factor_names``."""
    schema: dict[str, pl.DataType] = {}
    for column in factor_exposure_columns(factor_names):
        if column == "symbol":
            schema[column] = pl.Utf8()
        elif column == "session_date":
            schema[column] = pl.Date()
        elif column == "n_obs":
            schema[column] = pl.Int64()
        else:
            schema[column] = pl.Float64()
    return schema


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------


def _require_columns(frame: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise FactorModelInputError(f"{name}: missing columns {missing}; got {frame.columns}")


def _require_numeric(frame: pl.DataFrame, name: str, column: str) -> None:
    dtype = frame.schema[column]
    if not (dtype.is_float() or dtype.is_integer()):
        raise FactorModelInputError(f"{name}: column {column!r} must be numeric (float64), got {dtype}")


def _first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _duplicate_rows(frame: pl.DataFrame, keys: list[str]) -> tuple[int, int] | None:
    """Row numbers of the first two rows sharing a key, or None when the keys are unique."""
    indexed = frame.select(keys).with_row_index("_r")
    duplicated = indexed.filter(pl.struct(keys).is_duplicated())
    if duplicated.height == 0:
        return None
    first = duplicated.row(0, named=True)
    same = duplicated.filter(pl.all_horizontal([pl.col(key) == first[key] for key in keys]))
    return int(same["_r"][0]), int(same["_r"][1])


def _check_factor_names(factor_names: Sequence[str]) -> list[str]:
    if isinstance(factor_names, str):
        raise FactorModelInputError("factor_names must be a sequence of names, not one string")
    names = list(factor_names)
    if not names:
        raise FactorModelInputError("factor_names is empty: at least one factor is needed")
    if len(set(names)) != len(names):
        raise FactorModelInputError(f"factor_names has duplicates: {names}")
    if "session_date" in names:
        raise FactorModelInputError("'session_date' cannot be a factor name")
    return names


def _prepare_factors(factors: pl.DataFrame, names: list[str]) -> tuple[pl.Series, np.ndarray]:
    """Sorted factor calendar and the (sessions x factors) matrix, NaN where a factor is null/NaN."""
    _require_columns(factors, "factors", ["session_date", *names])
    if factors.schema["session_date"] != pl.Date():
        raise FactorModelInputError(
            f"factors: column 'session_date' must be pl.Date, got {factors.schema['session_date']}"
        )
    for name in names:
        _require_numeric(factors, "factors", name)
    dates = factors["session_date"]
    if dates.null_count():
        row = _first_true(dates.is_null().to_numpy())
        raise FactorModelInputError(f"factors row {row}: field 'session_date' is null")
    pair = _duplicate_rows(factors, ["session_date"])
    if pair:
        raise FactorModelInputError(
            f"factors rows {pair[0]} and {pair[1]}: duplicate session_date {dates[pair[0]]}"
        )
    ordered = factors.with_row_index("_row").sort("session_date")
    matrix = np.column_stack(
        [ordered[name].cast(pl.Float64).fill_null(float("nan")).to_numpy() for name in names]
    ).astype(np.float64, copy=False)
    infinite = np.isinf(matrix)
    if infinite.any():
        r, c = np.argwhere(infinite)[0]
        raise FactorModelInputError(
            f"factors row {int(ordered['_row'][int(r)])}: field {names[int(c)]!r} is infinite"
        )
    return ordered["session_date"], matrix


def _prepare_returns(returns: pl.DataFrame) -> pl.DataFrame:
    """``symbol, session_date, excess_return`` (Float64, null -> NaN) with the input row number ``_row``,
    sorted by ``symbol, session_date`` and checked (no null keys, no duplicate keys, no infinities)."""
    _require_columns(returns, "returns", ["symbol", "session_date", "excess_return"])
    if returns.schema["session_date"] != pl.Date():
        raise FactorModelInputError(
            f"returns: column 'session_date' must be pl.Date, got {returns.schema['session_date']}"
        )
    if returns.schema["symbol"] not in (pl.Utf8(), pl.Categorical()):
        raise FactorModelInputError(
            f"returns: column 'symbol' must be a string, got {returns.schema['symbol']}"
        )
    _require_numeric(returns, "returns", "excess_return")
    frame = returns.select(
        pl.col("symbol").cast(pl.Utf8),
        pl.col("session_date"),
        pl.col("excess_return").cast(pl.Float64).fill_null(float("nan")),
    ).with_row_index("_row")
    for column in ("symbol", "session_date"):
        if frame[column].null_count():
            row = _first_true(frame[column].is_null().to_numpy())
            raise FactorModelInputError(f"returns row {row}: field {column!r} is null")
    frame = frame.sort("symbol", "session_date", maintain_order=True)
    # Sorted, so a duplicate key sits right after its first occurrence.
    duplicated = frame.select(
        (pl.col("symbol") == pl.col("symbol").shift())
        & (pl.col("session_date") == pl.col("session_date").shift())
    ).to_series()
    if duplicated.any():
        position = _first_true(duplicated.fill_null(False).to_numpy())
        rows = sorted((int(frame["_row"][position - 1]), int(frame["_row"][position])))
        raise FactorModelInputError(
            f"returns rows {rows[0]} and {rows[1]}: duplicate (symbol, session_date) = "
            f"({frame['symbol'][position]!r}, {frame['session_date'][position]})"
        )
    infinite = np.isinf(frame["excess_return"].to_numpy())
    if infinite.any():
        position = _first_true(infinite)
        raise FactorModelInputError(
            f"returns row {int(frame['_row'][position])}: field 'excess_return' is infinite "
            f"(symbol {frame['symbol'][position]!r}, session_date {frame['session_date'][position]})"
        )
    return frame


# --------------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------------


def _window_sums_inplace(buffer: np.ndarray, window: int) -> None:
    """Replace ``buffer`` (shape ``(q, blocks * window, c)``) by its trailing-``window`` sums along axis 1.

    Cumulative sums restart every ``window`` rows: the window ending at row t is the prefix of t's
    block plus the suffix of the previous block (block total minus a prefix), so no sum spans more than
    ``2 * window`` terms and the rounding error is that of summing one window directly, however long
    the history is. The first block is a truncated (expanding) window.
    """
    q, rows, c = buffer.shape
    blocks = rows // window
    shaped = buffer.reshape(q, blocks, window, c)
    np.cumsum(shaped, axis=2, out=shaped)
    # Reverse order: block b needs block b-1's prefix sums before they are themselves shifted.
    for b in range(blocks - 1, 0, -1):
        previous = shaped[:, b - 1]
        shaped[:, b] += previous[:, -1:, :] - previous


def rolling_window_sums(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of ``values`` over the trailing ``window`` rows (axis 0), truncated at the start.

    Same re-anchored cumulative sums as the regressions use (see :func:`_window_sums_inplace`).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    blocks = max(1, -(-n // window))
    flat = values.reshape(n, -1)
    buffer = np.zeros((1, blocks * window, flat.shape[1]))
    buffer[0, :n] = flat
    _window_sums_inplace(buffer, window)
    return buffer[0, :n].reshape(values.shape)


def _standardize(values: np.ndarray, valid: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the valid entries along ``axis`` (1.0 where degenerate)."""
    count = valid.sum(axis=axis)
    filled = np.where(valid, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=axis) / count
        centered = np.where(valid, values - np.expand_dims(mean, axis), 0.0)
        std = np.sqrt((centered**2).sum(axis=axis) / count)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean, std


def _triangle(k: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(k) for b in range(a, k)]


def _solve_moments(
    moments: np.ndarray, k: int, min_obs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Regression statistics in standardized units from window moments, one column per (session, symbol).

    ``moments`` rows: n, Sx (k), Sxx upper triangle, Sy, Sxy (k), Syy. Works on lists of 1-D arrays so
    every step is one contiguous vectorized operation over all (session, symbol) pairs.
    Returns ``n_obs, ok, beta (k, r), ssr, centered tss, intercept``.
    """
    tri = _triangle(k)
    p = len(tri)
    n = moments[0]
    sx = moments[1 : 1 + k]
    sy = moments[1 + k + p]
    sxy = moments[2 + k + p : 2 + 2 * k + p]
    syy = moments[2 + 2 * k + p]
    n_obs = np.rint(n).astype(np.int64)
    ok = n_obs >= min_obs
    inv_n = 1.0 / np.where(n_obs > 0, n, 1.0)
    mean_x = sx * inv_n
    mean_y = sy * inv_n

    # Window-centered cross-products.
    cxx: dict[tuple[int, int], np.ndarray] = {}
    for column, (a, b) in enumerate(tri):
        cxx[a, b] = moments[1 + k + column] - sx[a] * mean_x[b]
    cxy = sxy - sx * mean_y
    cyy = syy - sy * mean_y

    # Scale to the correlation matrix; a (near-)constant factor makes the window singular.
    min_var = (CONSTANT_FACTOR_REL_STD**2) * n
    scale = []
    for j in range(k):
        constant = ~(cxx[j, j] > min_var)
        ok &= ~constant
        scale.append(np.sqrt(np.where(constant, 1.0, cxx[j, j])))
    inv_scale = [1.0 / s for s in scale]

    # Vectorized Cholesky of the correlation matrices, flagging collinear factor windows.
    lower: dict[tuple[int, int], np.ndarray] = {}
    inv_diag = []
    for j in range(k):
        pivot = 1.0 - sum((lower[j, m] ** 2 for m in range(j)), np.zeros_like(n))
        good = pivot >= COLLINEAR_PIVOT_TOL
        ok &= good
        inv_root = 1.0 / np.sqrt(np.where(good, pivot, 1.0))
        inv_diag.append(inv_root)
        for i in range(j + 1, k):
            corr = cxx[j, i] * inv_scale[i] * inv_scale[j]
            for m in range(j):
                corr -= lower[i, m] * lower[j, m]
            lower[i, j] = corr * inv_root
    z = []
    for j in range(k):
        value = cxy[j] * inv_scale[j]
        for m in range(j):
            value = value - lower[j, m] * z[m]
        z.append(value * inv_diag[j])
    g: list[np.ndarray] = [np.empty(0)] * k
    for j in reversed(range(k)):
        value = z[j]
        for m in range(j + 1, k):
            value = value - lower[m, j] * g[m]
        g[j] = value * inv_diag[j]
    beta = np.stack([g[j] * inv_scale[j] for j in range(k)])
    ssr = cyy - sum((zj * zj for zj in z), np.zeros_like(n))
    np.maximum(ssr, 0.0, out=ssr)
    intercept = mean_y - (beta * mean_x).sum(axis=0)
    return n_obs, ok, beta, ssr, cyy, intercept


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def rolling_factor_exposures(
    returns: pl.DataFrame,
    factors: pl.DataFrame,
    *,
    factor_names: Sequence[str] = DEFAULT_FACTORS,
    window: int = 252,
    min_obs: int = 126,
) -> pl.DataFrame:
    """Rolling OLS of each security's excess return on the factor returns, all securities at once.

    Args:
        returns: long frame ``symbol, session_date, excess_return`` (the security's simple return minus
            the risk-free rate); null/NaN values and missing rows are allowed and mean "no observation".
        factors: wide frame ``session_date`` + one numeric column per name in ``factor_names``; its dates
            are the factor calendar that defines the windows. A session where any factor is null/NaN
            counts towards the window length but is no observation for anyone.
        factor_names: the regressors, in output order (``beta_<name>`` columns).
        window: the number of factor-calendar sessions in each window, ending at (and including) the row's
            session. Near the start of ``factors`` the window holds the sessions available (expanding,
            like ``RollingOLS(expanding=True)``); give at least ``window - 1`` earlier sessions of
            factors (and returns) to get full windows for the dates you care about.
        min_obs: the minimum number of valid observations for an estimate; must be at least
            ``len(factor_names) + 2`` (so residual variance has a degree of freedom) and at most
            ``window``.

    Returns:
        One row per ``returns`` row whose ``session_date`` is in the factor calendar (rows on other
        dates, e.g. a TSX session on a NYSE holiday, cannot be regressed and are left out), sorted by
        ``symbol, session_date``, with columns ``factor_exposure_columns(factor_names)``:

        - ``alpha``: the daily intercept (same units as the returns, not annualized);
        - ``beta_<factor>``: the slope on each factor;
        - ``r_squared``: the centered R² (statsmodels' ``rsquared``), null when the security's return is
          constant over the window;
        - ``residual_vol``: annualized residual standard deviation
          ``sqrt(SSR / (n_obs - len(factor_names) - 1)) * sqrt(252)``;
        - ``n_obs``: valid observations in the window (always filled).

        Estimates are null when ``n_obs < min_obs`` or when the window is singular: a factor is constant
        in the window (its standard deviation there is below 1e-6 of its full-history one) or the
        factors are collinear (one factor's R² on the others exceeds 1 - 1e-10). Nulls, never garbage.
    """
    names = _check_factor_names(factor_names)
    k = len(names)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise FactorModelInputError(f"window must be a positive int, got {window!r}")
    if isinstance(min_obs, bool) or not isinstance(min_obs, int) or not (k + 2 <= min_obs <= window):
        raise FactorModelInputError(
            f"min_obs must be an int between len(factor_names) + 2 = {k + 2} and window = {window}, "
            f"got {min_obs!r}"
        )
    calendar, x_raw = _prepare_factors(factors, names)
    frame = _prepare_returns(returns)
    schema = factor_exposure_schema(names)
    beta_columns = [f"beta_{name}" for name in names]

    calendar_index = pl.DataFrame({"session_date": calendar}).with_row_index("_t")
    rows = frame.join(calendar_index, on="session_date", how="inner", maintain_order="left").with_columns(
        (pl.col("symbol") != pl.col("symbol").shift()).fill_null(True).cum_sum().alias("_s")
    )
    if rows.height == 0:
        return pl.DataFrame(schema=schema)
    sym_idx = rows["_s"].to_numpy().astype(np.int64) - 1
    t_idx = rows["_t"].to_numpy().astype(np.int64)
    y_values = rows["excess_return"].to_numpy()
    n_sessions, n_symbols = len(calendar), int(sym_idx[-1]) + 1
    blocks = -(-n_sessions // window)

    # Factors standardized by their full-history moments; invalid sessions zeroed and masked.
    date_valid = np.isfinite(x_raw).all(axis=1)
    x_mean, x_std = _standardize(x_raw, date_valid[:, None], axis=0)
    x_std_data = np.where(date_valid[:, None], (x_raw - x_mean) / x_std, 0.0)
    tri = _triangle(k)
    design = np.vstack(
        [np.ones(n_sessions), x_std_data.T, *[x_std_data[:, a] * x_std_data[:, b] for a, b in tri]]
    )  # (1 + k + p, sessions): the moments that do not involve y
    design[:, ~date_valid] = 0.0
    n_design = design.shape[0]
    n_moments = n_design + k + 2

    n_rows = rows.height
    alpha = np.full(n_rows, np.nan)
    betas = np.full((k, n_rows), np.nan)
    r_squared = np.full(n_rows, np.nan)
    residual_vol = np.full(n_rows, np.nan)
    n_obs = np.zeros(n_rows, dtype=np.int64)

    # rows are sorted by symbol, so each chunk of symbols is a contiguous slice of rows.
    chunk = max(1, _CHUNK_CELLS // max(n_sessions, 1))
    for start_sym in range(0, n_symbols, chunk):
        width = min(chunk, n_symbols - start_sym)
        row_lo, row_hi = np.searchsorted(sym_idx, [start_sym, start_sym + width])
        sl = slice(int(row_lo), int(row_hi))
        local = sym_idx[sl] - start_sym
        t_local = t_idx[sl]
        y_grid = np.full((n_sessions, width), np.nan)
        y_grid[t_local, local] = y_values[sl]
        valid = np.isfinite(y_grid) & date_valid[:, None]
        y_mean, y_std = _standardize(y_grid, valid, axis=0)
        y_std_grid = np.where(valid, (y_grid - y_mean) / y_std, 0.0)

        # Per-cell contributions, laid out (moment, session, symbol) and padded to whole windows.
        cells = np.zeros((n_moments, blocks * window, width))
        np.multiply(design[:, :, None], valid[None, :, :], out=cells[:n_design, :n_sessions])
        cells[n_design, :n_sessions] = y_std_grid
        np.multiply(
            x_std_data.T[:, :, None],
            y_std_grid[None, :, :],
            out=cells[n_design + 1 : n_design + 1 + k, :n_sessions],
        )
        np.multiply(y_std_grid, y_std_grid, out=cells[-1, :n_sessions])
        _window_sums_inplace(cells, window)
        flat_cells = cells.reshape(n_moments, -1)
        flat_index = t_local * width + local
        count = np.rint(flat_cells[0, flat_index]).astype(np.int64)
        n_obs[sl] = count
        enough = count >= min_obs
        if not enough.any():
            continue
        targets = np.flatnonzero(enough) + sl.start  # output rows that get an estimate
        moments = np.take(flat_cells, flat_index[enough], axis=1)
        del cells, flat_cells

        _, ok, beta_std, ssr_std, cyy, intercept_std = _solve_moments(moments, k, min_obs)
        count = count[enough]
        sd_y = y_std[local[enough]]
        mu_y = y_mean[local[enough]]
        beta = beta_std * (sd_y / x_std[:, None])
        resid_var = sd_y**2 * ssr_std / (count - k - 1)  # min_obs >= k + 2, so the divisor is positive
        with np.errstate(invalid="ignore", divide="ignore"):
            rsq = 1.0 - ssr_std / cyy
        varying_y = cyy > (CONSTANT_FACTOR_REL_STD**2) * count
        alpha[targets] = np.where(ok, mu_y + sd_y * intercept_std - x_mean @ beta, np.nan)
        betas[:, targets] = np.where(ok, beta, np.nan)
        r_squared[targets] = np.where(ok & varying_y, rsq, np.nan)
        residual_vol[targets] = np.where(ok, np.sqrt(resid_var) * math.sqrt(TRADING_DAYS_PER_YEAR), np.nan)

    data: dict[str, object] = {
        "symbol": rows["symbol"],
        "session_date": rows["session_date"],
        "alpha": alpha,
        **{column: betas[j] for j, column in enumerate(beta_columns)},
        "r_squared": r_squared,
        "residual_vol": residual_vol,
        "n_obs": n_obs,
    }
    result = pl.DataFrame(data)
    float_columns = ["alpha", *beta_columns, "r_squared", "residual_vol"]
    return result.with_columns(pl.col(float_columns).fill_nan(None)).select(
        [pl.col(column).cast(dtype) for column, dtype in schema.items()]
    )


def portfolio_exposures(weights: pl.DataFrame, exposures: pl.DataFrame) -> pl.DataFrame:
    """Value-weighted factor exposures (alpha and every ``beta_*``) per ``portfolio_id, session_date``.

    ``weights``: ``portfolio_id, symbol, session_date, weight`` (fractions of portfolio value; shorts
    negative). ``exposures``: output of :func:`rolling_factor_exposures`.

    A holding is *covered* on a date when its exposure row exists and its estimates are not null.
    Uncovered holdings are left out and the covered ones scaled up to the whole book:
    ``exposure = sum_covered(w * beta) * sum_all(|w|) / sum_covered(|w|)``, which for a long-only
    portfolio is the weighted mean over the covered weight. ``coverage = sum_covered(|w|) / sum_all(|w|)``
    is reported next to ``n_holdings`` and ``n_covered``, so consumers can reject thin coverage; with
    nothing covered the exposures are null and coverage is 0. Cash has no exposure row: leave it out of
    ``weights`` or give it explicit zero-beta exposure rows, otherwise it is renormalized away.

    Returns ``portfolio_id, session_date, alpha, beta_..., coverage, n_holdings, n_covered`` sorted by
    ``portfolio_id, session_date``.
    """
    _require_columns(weights, "weights", ["portfolio_id", "symbol", "session_date", "weight"])
    _require_numeric(weights, "weights", "weight")
    _require_columns(exposures, "exposures", ["symbol", "session_date", "alpha"])
    value_columns = ["alpha", *[column for column in exposures.columns if column.startswith("beta_")]]
    if len(value_columns) == 1:
        raise FactorModelInputError("exposures: no beta_<factor> columns")
    for column in ("portfolio_id", "symbol", "session_date", "weight"):
        nulls = weights[column].is_null().to_numpy()
        if column == "weight":
            nulls = nulls | np.isnan(weights[column].cast(pl.Float64).to_numpy())
        if nulls.any():
            raise FactorModelInputError(f"weights row {_first_true(nulls)}: field {column!r} is null or NaN")
    pair = _duplicate_rows(weights, ["portfolio_id", "symbol", "session_date"])
    if pair:
        row = pair[0]
        raise FactorModelInputError(
            f"weights rows {pair[0]} and {pair[1]}: duplicate (portfolio_id, symbol, session_date) = "
            f"({weights['portfolio_id'][row]!r}, {weights['symbol'][row]!r}, {weights['session_date'][row]})"
        )
    pair = _duplicate_rows(exposures, ["symbol", "session_date"])
    if pair:
        raise FactorModelInputError(
            f"exposures rows {pair[0]} and {pair[1]}: duplicate (symbol, session_date) = "
            f"({exposures['symbol'][pair[0]]!r}, {exposures['session_date'][pair[0]]})"
        )

    values = exposures.select(
        "symbol", "session_date", *[pl.col(c).cast(pl.Float64).fill_nan(None) for c in value_columns]
    )
    joined = weights.with_columns(pl.col("weight").cast(pl.Float64)).join(
        values, on=["symbol", "session_date"], how="left"
    )
    covered = pl.all_horizontal([pl.col(c).is_not_null() for c in value_columns])
    joined = joined.with_columns(
        covered.alias("_covered"), pl.col("weight").abs().alias("_gross")
    ).with_columns(pl.when(pl.col("_covered")).then(pl.col("_gross")).otherwise(0.0).alias("_gross_covered"))
    aggregated = joined.group_by("portfolio_id", "session_date").agg(
        *[
            (pl.when(pl.col("_covered")).then(pl.col("weight") * pl.col(c)).otherwise(0.0)).sum().alias(c)
            for c in value_columns
        ],
        pl.col("_gross").sum().alias("_gross"),
        pl.col("_gross_covered").sum().alias("_gross_covered"),
        pl.len().cast(pl.Int64).alias("n_holdings"),
        pl.col("_covered").sum().cast(pl.Int64).alias("n_covered"),
    )
    has_cover = pl.col("_gross_covered") > 0
    return (
        aggregated.with_columns(
            *[
                pl.when(has_cover).then(pl.col(c) * pl.col("_gross") / pl.col("_gross_covered")).alias(c)
                for c in value_columns
            ],
            pl.when(pl.col("_gross") > 0)
            .then(pl.col("_gross_covered") / pl.col("_gross"))
            .otherwise(0.0)
            .alias("coverage"),
        )
        .select("portfolio_id", "session_date", *value_columns, "coverage", "n_holdings", "n_covered")
        .sort("portfolio_id", "session_date")
    )
