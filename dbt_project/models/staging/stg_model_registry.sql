select
    model_id, trained_at, train_start, train_end, label_horizon,
    oos_ic, oos_rank_ic, oos_icir, oos_hit_rate
from {{ source('models', 'model_registry') }}
