select
    symbol,
    name as security_name,
    exchange,
    currency,
    asset_class,
    sector,
    is_synthetic
from {{ source('ref', 'securities') }}
