{#- The latest session's predictions: score, rank (1 = highest score) and the model that made them.
    Joined to the master row of the scored security (security_id) and the symbol it traded under. -#}
with latest as (
    select max(session_date) as session_date
    from {{ ref('stg_predictions') }}
)

select
    p.symbol,
    p.session_date,
    p.security_id,
    p.model_id,
    p.score,
    p.score_rank as rank,
    s.security_name,
    s.sector,
    r.trained_at as model_trained_at,
    r.train_end as model_train_end,
    r.oos_ic as model_oos_ic,
    r.oos_rank_ic as model_oos_rank_ic
from {{ ref('stg_predictions') }} as p
join latest
    on latest.session_date = p.session_date
left join {{ ref('stg_securities') }} as s
    on s.security_id = p.security_id and s.symbol = p.symbol
left join {{ ref('stg_model_registry') }} as r
    on r.model_id = p.model_id
