select
    symbol,
    security_id,
    session_date as exposure_date,
    alpha, beta_market, beta_size, beta_value, beta_momentum,
    r_squared, residual_vol, n_obs
from {{ source('analytics', 'factor_exposures') }}
