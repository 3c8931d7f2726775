-- Reconciliation: received files, runs, matches, breaks, alerts, payout resolutions.

-- One row per distinct file received (by SHA-256): accepted or quarantined, never both.
CREATE TABLE recon_files (
    file_id        text PRIMARY KEY,
    channel        text NOT NULL,
    sha256         text NOT NULL UNIQUE,
    filename       text NOT NULL,
    size_bytes     bigint NOT NULL CHECK (size_bytes >= 0),
    format         text,
    status         text NOT NULL CHECK (status IN ('accepted', 'quarantined')),
    reason_code    text,
    reason         text,
    business_date  date,
    line_count     integer NOT NULL DEFAULT 0,
    lines_path     text,            -- the columnar copy of the accepted lines
    source         text NOT NULL,   -- dropdir | upload | cli
    received_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'accepted') = (business_date IS NOT NULL AND lines_path IS NOT NULL))
);
CREATE INDEX recon_files_day ON recon_files (channel, business_date) WHERE status = 'accepted';

CREATE TABLE recon_statements (
    file_id          text NOT NULL REFERENCES recon_files (file_id),
    statement_id     text NOT NULL,
    channel          text NOT NULL,
    account          text NOT NULL,
    currency         text NOT NULL,
    sequence_number  integer,
    opening_minor    bigint,
    closing_minor    bigint,
    line_count       integer NOT NULL,
    PRIMARY KEY (file_id, statement_id)
);
CREATE INDEX recon_statements_sequence ON recon_statements (channel, account, sequence_number);

-- One row per reconciliation of (channel, business day); a new input set supersedes the old.
CREATE TABLE recon_runs (
    run_id          text PRIMARY KEY,
    channel         text NOT NULL,
    business_date   date NOT NULL,
    identity        text NOT NULL,   -- SHA-256 over input hashes + rules version
    inputs          jsonb NOT NULL,  -- {files: [{file_id, sha256}], records_sha256, records}
    rules_version   text NOT NULL,
    rules           jsonb NOT NULL,
    summary         jsonb NOT NULL,  -- counts and amounts per pass and per break code
    line_count      integer NOT NULL,
    record_count    integer NOT NULL,
    matched_lines   integer NOT NULL,
    break_count     integer NOT NULL,
    report_path     text,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    superseded_by   text,            -- the run that replaced this one (new inputs)
    CHECK (finished_at >= started_at)
);
CREATE INDEX recon_runs_identity ON recon_runs (channel, business_date, identity);
CREATE UNIQUE INDEX recon_runs_current ON recon_runs (channel, business_date)
    WHERE superseded_by IS NULL;

CREATE TABLE recon_matches (
    run_id        text NOT NULL REFERENCES recon_runs (run_id),
    statement_id  text NOT NULL,
    line_number   integer NOT NULL,
    attempt_id    text NOT NULL,
    pass          text NOT NULL
);
CREATE INDEX recon_matches_attempt ON recon_matches (attempt_id);
CREATE INDEX recon_matches_run ON recon_matches (run_id);

CREATE TABLE recon_breaks (
    break_id               text PRIMARY KEY,
    run_id                 text NOT NULL REFERENCES recon_runs (run_id),
    channel                text NOT NULL,
    business_date          date NOT NULL,
    code                   text NOT NULL,
    severity               text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    status                 text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    statement_id           text,
    line_number            integer,
    attempt_id             text,
    payout_id              text,
    amount_minor           bigint,
    expected_amount_minor  bigint,
    currency               text,
    fee_minor              bigint,
    expected_fee_minor     bigint,
    value_date             date,
    record_date           date,
    detail                 text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    closed_at              timestamptz,
    closed_reason          text,
    CHECK (statement_id IS NOT NULL OR attempt_id IS NOT NULL)
);
CREATE INDEX recon_breaks_run ON recon_breaks (run_id, code);
CREATE INDEX recon_breaks_attempt ON recon_breaks (attempt_id) WHERE attempt_id IS NOT NULL;
CREATE INDEX recon_breaks_open ON recon_breaks (channel, code) WHERE status = 'open';

-- Alerts: one OPEN alert per cause; a repeat increments its count instead of a new alert.
CREATE TABLE recon_alerts (
    alert_id         text PRIMARY KEY,
    cause            text NOT NULL,
    code             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    message          text NOT NULL,
    channel          text,
    business_date    date,
    context          jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'acknowledged', 'closed')),
    occurrences      integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    closed_at        timestamptz
);
CREATE UNIQUE INDEX recon_alerts_one_open_per_cause ON recon_alerts (cause)
    WHERE status <> 'closed';
CREATE INDEX recon_alerts_status ON recon_alerts (status, severity);

-- Each payout outcome recon reports is published once, whatever the number of reruns.
CREATE TABLE recon_resolutions (
    attempt_id     text NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('paid', 'failed', 'returned')),
    payout_id      text NOT NULL,
    run_id         text NOT NULL REFERENCES recon_runs (run_id),
    amount_minor   bigint NOT NULL,
    currency       text NOT NULL,
    statement_id   text,
    line_number    integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (attempt_id, outcome)
);

-- Days whose run is due (a file was accepted) or failed and must be retried.
CREATE TABLE recon_run_requests (
    channel        text NOT NULL,
    business_date  date NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    not_before     timestamptz NOT NULL DEFAULT now(),
    last_error     text,
    PRIMARY KEY (channel, business_date)
);
