select
    symbol,
    security_id,
    valid_from,
    valid_to,
    name as security_name,
    exchange,
    currency,
    asset_class,
    sector,
    is_synthetic
from {{ source('ref', 'securities') }}
