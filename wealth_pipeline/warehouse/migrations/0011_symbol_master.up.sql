-- The symbol master with identity and history (issue 21; README "Symbol master").
-- ref.securities keeps one row per symbol (its primary key, so every existing join on symbol still
-- works) and gains the stable security_id that never changes: every symbol a security has used is a
-- row of its own with the dates it identified the security (valid_from, valid_to exclusive). A
-- ticker change is therefore two rows with one security_id, and facts join on security_id.
ALTER TABLE ref.securities
    ADD COLUMN security_id        text,
    ADD COLUMN isin               text CHECK (isin IS NULL OR isin ~ '^[A-Z]{2}[A-Z0-9]{9}[0-9]$'),
    ADD COLUMN cusip              text CHECK (cusip IS NULL OR cusip ~ '^[A-Z0-9*@#]{8}[0-9]$'),
    ADD COLUMN figi               text CHECK (figi IS NULL OR figi ~ '^[B-DF-HJ-NP-TV-Z]{2}G[B-DF-HJ-NP-TV-Z0-9]{8}[0-9]$'),
    ADD COLUMN mic                text CHECK (mic IS NULL OR mic ~ '^[A-Z0-9]{4}$'),
    ADD COLUMN country            text CHECK (country IS NULL OR country ~ '^[A-Z]{2}$'),
    ADD COLUMN security_type      text,
    ADD COLUMN industry           text,
    ADD COLUMN dividend_currency  text,
    ADD COLUMN valid_from         date,
    ADD COLUMN valid_to           date,
    ADD CONSTRAINT securities_valid_interval CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from);
CREATE INDEX securities_security_id_idx ON ref.securities (security_id);
COMMENT ON TABLE ref.securities IS
    'Securities master: one row per symbol a security has used, with its stable security_id and the dates the symbol identified it';
COMMENT ON COLUMN ref.securities.security_id IS
    'Stable internal id of the security: never changes with ticker, name or identifier changes';
COMMENT ON COLUMN ref.securities.isin IS 'ISO 6166 ISIN, check digit verified';
COMMENT ON COLUMN ref.securities.cusip IS 'CUSIP (from a US/CA ISIN or the vendor), check digit verified';
COMMENT ON COLUMN ref.securities.figi IS 'OpenFIGI identifier where a source provides it, check digit verified';
COMMENT ON COLUMN ref.securities.mic IS 'ISO 10383 market identifier code of the listing exchange';
COMMENT ON COLUMN ref.securities.country IS 'Domicile, ISO 3166 alpha-2 (the ISIN''s prefix where no source gives it)';
COMMENT ON COLUMN ref.securities.valid_from IS 'First session this symbol identified the security (listing or ticker change)';
COMMENT ON COLUMN ref.securities.valid_to IS 'First date it no longer did (delisting or ticker change); NULL while current';

-- Dated records of every security: one row per interval over which its symbol, name, exchange and
-- ISIN were constant. A listing starts the first interval, a delisting ends the last one
-- (valid_to set), a ticker or name change closes one interval and opens the next.
CREATE TABLE ref.securities_history (
    security_id  text NOT NULL,
    valid_from   date NOT NULL,
    valid_to     date,
    symbol       text NOT NULL,
    name         text,
    exchange     text,
    mic          text,
    isin         text,
    change       text NOT NULL CHECK (change IN ('listing', 'ticker_change', 'name_change', 'identifier_change')),
    PRIMARY KEY (security_id, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX securities_history_symbol_idx ON ref.securities_history (symbol, valid_from);
COMMENT ON TABLE ref.securities_history IS
    'Listing intervals, ticker and name changes of each security as dated records [valid_from, valid_to)';
COMMENT ON COLUMN ref.securities_history.change IS 'What opened this interval: listing, ticker_change, name_change, identifier_change';

-- Index membership over time: one row per (index, security, interval) [valid_from, valid_to).
CREATE TABLE ref.index_membership (
    index_name   text NOT NULL,
    security_id  text NOT NULL,
    valid_from   date NOT NULL,
    valid_to     date,
    PRIMARY KEY (index_name, security_id, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
COMMENT ON TABLE ref.index_membership IS 'Point-in-time index membership: joins (valid_from) and leaves (valid_to, exclusive)';

-- The universe as of a date: securities listed that day (with the symbol and name they had then),
-- restricted to an index's members that day when index_name is given.
CREATE FUNCTION ref.universe_as_of(as_of date, index_name text DEFAULT NULL)
RETURNS TABLE (security_id text, symbol text, name text, exchange text, mic text, isin text)
LANGUAGE sql STABLE
AS $$
    SELECT h.security_id, h.symbol, h.name, h.exchange, h.mic, h.isin
    FROM ref.securities_history h
    WHERE h.valid_from <= as_of AND (h.valid_to IS NULL OR as_of < h.valid_to)
      AND (index_name IS NULL OR EXISTS (
          SELECT 1 FROM ref.index_membership m
          WHERE m.index_name = universe_as_of.index_name AND m.security_id = h.security_id
            AND m.valid_from <= as_of AND (m.valid_to IS NULL OR as_of < m.valid_to)))
    ORDER BY h.symbol
$$;
COMMENT ON FUNCTION ref.universe_as_of(date, text) IS
    'Securities listed on as_of (symbol and name as of then), optionally only the members of index_name that day';

-- Bars, the first fact table on the stable id.
ALTER TABLE market.bars_daily ADD COLUMN security_id text;
COMMENT ON COLUMN market.bars_daily.security_id IS 'Stable security id (ref.securities.security_id): one series across ticker changes';
CREATE INDEX bars_daily_security_id_idx ON market.bars_daily (security_id, session_date);
