select symbol, session_date, security_id, model_id, score, rank as score_rank
from {{ source('models', 'predictions') }}
