-- Source lineage on every market-data row (issue 22): `source` is the rights-registry key of the
-- provider that delivered the row (the synthetic market, the landing-zone vendor its file's path
-- names, the HTTP adapter's name). market.bars_daily already had the column (it held the literal
-- 'raw'); corporate actions, FX, factor and benchmark returns gain it.
ALTER TABLE market.corporate_actions ADD COLUMN source text;
ALTER TABLE market.fx_rates ADD COLUMN source text;
ALTER TABLE market.factor_returns ADD COLUMN source text;
ALTER TABLE market.benchmark_returns ADD COLUMN source text;

-- Rows loaded before this migration: the provider ops.lineage records for their dataset and session
-- when it records exactly one; otherwise 'unknown' (no provider on record, or several: which one fed
-- the row cannot be told), the lineage's own marker, which the rights registry does not know, so an
-- export of such a row is refused. The next load of the partition writes the delivered provider.
UPDATE market.bars_daily t
SET source = coalesce((SELECT l.sources[1] FROM ops.lineage l
                       WHERE l.dataset = 'bars' AND l.session_date = t.session_date
                         AND cardinality(l.sources) = 1), 'unknown')
WHERE t.source IS NULL OR t.source = 'raw';
UPDATE market.corporate_actions t
SET source = coalesce((SELECT l.sources[1] FROM ops.lineage l
                       WHERE l.dataset = 'corporate_actions' AND l.session_date = t.ex_date
                         AND cardinality(l.sources) = 1), 'unknown');
UPDATE market.fx_rates t
SET source = coalesce((SELECT l.sources[1] FROM ops.lineage l
                       WHERE l.dataset = 'fx_rates' AND l.session_date = t.session_date
                         AND cardinality(l.sources) = 1), 'unknown');
UPDATE market.factor_returns t
SET source = coalesce((SELECT l.sources[1] FROM ops.lineage l
                       WHERE l.dataset = 'factor_returns' AND l.session_date = t.session_date
                         AND cardinality(l.sources) = 1), 'unknown');
UPDATE market.benchmark_returns t
SET source = coalesce((SELECT l.sources[1] FROM ops.lineage l
                       WHERE l.dataset = 'benchmark_returns' AND l.session_date = t.session_date
                         AND cardinality(l.sources) = 1), 'unknown');

COMMENT ON COLUMN market.bars_daily.source IS
    'Provider that delivered the row (rights-registry key); unknown: no single provider on record';
COMMENT ON COLUMN market.corporate_actions.source IS
    'Provider that delivered the row (rights-registry key); unknown: no single provider on record';
COMMENT ON COLUMN market.fx_rates.source IS
    'Provider that delivered the row (rights-registry key); unknown: no single provider on record';
COMMENT ON COLUMN market.factor_returns.source IS
    'Provider that delivered the row (rights-registry key); unknown: no single provider on record';
COMMENT ON COLUMN market.benchmark_returns.source IS
    'Provider that delivered the row (rights-registry key); unknown: no single provider on record';
