-- Undo 0011: bars' security_id, the universe function, membership and history tables, the new columns.
DROP INDEX market.bars_daily_security_id_idx;
ALTER TABLE market.bars_daily DROP COLUMN security_id;
DROP FUNCTION ref.universe_as_of(date, text);
DROP TABLE ref.index_membership;
DROP TABLE ref.securities_history;
DROP INDEX ref.securities_security_id_idx;
ALTER TABLE ref.securities
    DROP CONSTRAINT securities_valid_interval,
    DROP COLUMN valid_to,
    DROP COLUMN valid_from,
    DROP COLUMN dividend_currency,
    DROP COLUMN industry,
    DROP COLUMN security_type,
    DROP COLUMN country,
    DROP COLUMN mic,
    DROP COLUMN figi,
    DROP COLUMN cusip,
    DROP COLUMN isin,
    DROP COLUMN security_id;
COMMENT ON TABLE ref.securities IS 'Securities master, one row per symbol';
