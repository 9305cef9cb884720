-- Undo 0004.
DROP TABLE analytics.factor_exposures;
DROP TABLE analytics.indicators_daily;
