-- Models: the registry of trained models and their daily cross-sectional predictions.

CREATE TABLE models.model_registry (
    model_id       text PRIMARY KEY,
    trained_at     timestamptz NOT NULL,
    train_start    date NOT NULL,
    train_end      date NOT NULL,
    label_horizon  int NOT NULL CHECK (label_horizon > 0),
    features       text[] NOT NULL,
    params         jsonb NOT NULL,
    metrics        jsonb NOT NULL,
    oos_ic         double precision,
    oos_rank_ic    double precision,
    oos_icir       double precision,
    oos_hit_rate   double precision,
    booster_uri    text NOT NULL,
    manifest_uri   text NOT NULL,
    data_snapshot  jsonb NOT NULL,
    CHECK (train_start <= train_end)
);
CREATE INDEX model_registry_train_end_idx ON models.model_registry (train_end, trained_at);
COMMENT ON TABLE models.model_registry IS
    'Trained models: window (train_end = last session of data seen, labels included), features, parameters, out-of-sample metrics, models-tier URIs, input snapshot';

CREATE TABLE models.predictions (
    symbol        text NOT NULL,
    session_date  date NOT NULL,
    model_id      text NOT NULL,
    score         double precision NOT NULL,
    rank          int NOT NULL CHECK (rank >= 1),
    PRIMARY KEY (symbol, session_date)
);
CREATE INDEX predictions_session_date_idx ON models.predictions (session_date);
CREATE INDEX predictions_model_id_idx ON models.predictions (model_id);
COMMENT ON TABLE models.predictions IS
    'Daily scores of the latest model trained strictly before the session; rank 1 = highest score of the session';

SELECT ops.enable_timeseries('models.predictions', 'session_date', ARRAY['symbol']::name[]);
