-- Undo 0012. Refused (duplicate key) while a symbol has several distributions on one ex-date: the
-- former key cannot hold them, and merging them here would change the data silently.
ALTER TABLE market.corporate_actions DROP CONSTRAINT corporate_actions_pkey;
ALTER TABLE market.corporate_actions DROP CONSTRAINT corporate_actions_distribution_type_check;
ALTER TABLE market.corporate_actions DROP COLUMN distribution_type;
ALTER TABLE market.corporate_actions
    ADD CONSTRAINT corporate_actions_pkey PRIMARY KEY (symbol, ex_date, action_type);
