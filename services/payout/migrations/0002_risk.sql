-- Risk controls (docs/RISK.md): versioned rule-set documents and the verdict on each payout.
CREATE SEQUENCE risk_ruleset_versions START 2;

CREATE TABLE risk_rulesets (
    version      bigint PRIMARY KEY,
    digest       text NOT NULL,
    document     jsonb NOT NULL,        -- the canonical document (RuleSet.document)
    source       text NOT NULL,         -- what the author sent, for reading it back
    author       text NOT NULL,
    rule_count   integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    published_by text
);

-- There is always a published version: the empty rule set (everything is allowed).
INSERT INTO risk_rulesets(version, digest, document, source, author, rule_count, published_at,
                          published_by)
VALUES (1, '', '{"format": 1}', '{"format": 1}', 'migration', 0, now(), 'migration');

ALTER TABLE payouts
    ADD COLUMN risk_version  bigint,
    ADD COLUMN risk_outcome  text CHECK (risk_outcome IN ('allow', 'review', 'block')),
    ADD COLUMN risk_decision jsonb;
CREATE INDEX payouts_created ON payouts (created_at, id);
