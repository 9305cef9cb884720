select symbol, session_date, model_id, score, rank as score_rank
from {{ source('models', 'predictions') }}
