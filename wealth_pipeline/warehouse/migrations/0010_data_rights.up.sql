-- Data rights (issue 22): which providers fed each published partition, who exported what, and the
-- licences a deployment or a login holds. The rights registry itself (per provider: export policy,
-- attribution, watermark) lives in the repository (wealth_pipeline/rights/providers.yaml).

-- One row per dataset and session: the providers its rows depend on (registry keys), written by the
-- publish step for every published dataset (market data from the raw deliveries' providers, derived
-- datasets from the union of their inputs' lineage). A mart row on a session traces to the lineage of
-- the datasets its dbt model reads on that session.
CREATE TABLE ops.lineage (
    dataset       text NOT NULL,
    session_date  date NOT NULL,
    sources       text[] NOT NULL,
    run_id        text,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, session_date)
);
CREATE INDEX lineage_session_date_idx ON ops.lineage (session_date);
COMMENT ON TABLE ops.lineage IS
    'Per dataset and session: the providers (rights registry keys) its rows depend on; written by the publish step';

-- Every export attempt, written or refused: who (the BI login the rows were read as), what (mart,
-- filters, format, file), when, which sources, how many rows (and how many were left out because a
-- metadata-only provider fed them).
CREATE TABLE ops.exports (
    export_id      bigserial PRIMARY KEY,
    exported_by    name NOT NULL,
    mart           text NOT NULL,
    filters        jsonb NOT NULL DEFAULT '{}'::jsonb,
    format         text NOT NULL,
    out_path       text NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('written', 'refused')),
    reason         text,
    sources        text[] NOT NULL DEFAULT '{}',
    row_count      bigint NOT NULL DEFAULT 0,
    excluded_rows  bigint NOT NULL DEFAULT 0,
    watermark      text,
    exported_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX exports_by_time_idx ON ops.exports (exported_by, exported_at);
COMMENT ON TABLE ops.exports IS
    'Audit of every mart export (written or refused): login, mart, filters, format, file, sources, row count';

-- Licence entitlements: a licence named by the rights registry, held by one login (grantee = its
-- role name) or by every login (grantee = '*'), optionally until a date. Configuration, not data:
-- BI logins cannot read it (an export reads it through the pipeline's connection).
CREATE TABLE ref.entitlements (
    licence     text NOT NULL CHECK (licence <> ''),
    grantee     text NOT NULL DEFAULT '*' CHECK (grantee <> ''),
    valid_until date,
    note        text,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (licence, grantee)
);
COMMENT ON TABLE ref.entitlements IS
    'Licences held: licence (a rights-registry licence name), grantee (a login role or * for all), valid_until';
REVOKE ALL ON ref.entitlements FROM wealth_bi;
