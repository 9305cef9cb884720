-- Several distributions on one ex-date (issue 14): a regular and a special dividend can share
-- (symbol, ex_date) (MSFT 2004-11-15: 3.00 special and 0.08 regular), so the key of
-- market.corporate_actions gains distribution_type. Dividends: regular (the default when a vendor
-- sends none), special, supplemental, capital_gain, return_of_capital; a split is always 'split'.
ALTER TABLE market.corporate_actions ADD COLUMN distribution_type text NOT NULL DEFAULT 'regular';
UPDATE market.corporate_actions SET distribution_type = 'split' WHERE action_type = 'split';
ALTER TABLE market.corporate_actions
    ADD CONSTRAINT corporate_actions_distribution_type_check CHECK (
        CASE action_type
            WHEN 'split' THEN distribution_type = 'split'
            ELSE distribution_type IN ('regular', 'special', 'supplemental', 'capital_gain', 'return_of_capital')
        END);
ALTER TABLE market.corporate_actions DROP CONSTRAINT corporate_actions_pkey;
ALTER TABLE market.corporate_actions
    ADD CONSTRAINT corporate_actions_pkey PRIMARY KEY (symbol, ex_date, action_type, distribution_type);
COMMENT ON COLUMN market.corporate_actions.distribution_type IS
    'Which distribution of the day: regular, special, supplemental, capital_gain, return_of_capital (dividends); split (splits)';
