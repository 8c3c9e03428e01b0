-- 0001: the whole registry. Applied by l1nda_sync.registry.schema inside one transaction.
-- Rows are never deleted by the application: a removed token keeps its audit trail (state 'removed').

CREATE TABLE tokens (
    id                    bigserial PRIMARY KEY,
    label                 text NOT NULL CHECK (label <> '' AND length(label) <= 100),
    level                 text NOT NULL CHECK (level IN ('accountant', 'debtor')),
    username              text NOT NULL CHECK (username <> ''),
    -- Fernet ciphertext; cleared when the token is removed (it is never used again).
    token_ciphertext      text,
    -- The token masked to its last 4 characters (l1nda_sync.masking.mask), for mails and tables.
    token_hint            text NOT NULL DEFAULT '(none)',
    -- HMAC-SHA256 of normalised login and token under a key derived from the newest Fernet key.
    fingerprint           text NOT NULL,
    domain                text,
    contact_emails        text[] NOT NULL DEFAULT '{}',
    contact_language      text NOT NULL DEFAULT 'en' CHECK (contact_language IN ('en', 'nl')),
    state                 text NOT NULL DEFAULT 'new' CHECK (state IN (
                              'new', 'active', 'invalid', 'revoked', 'rights_missing', 'no_subscription',
                              'unreachable', 'disabled', 'removed')),
    state_since           timestamptz NOT NULL DEFAULT now(),
    missing_operation     text,
    consecutive_invalid   integer NOT NULL DEFAULT 0,
    first_invalid_at      timestamptz,
    consecutive_transient integer NOT NULL DEFAULT 0,
    first_transient_at    timestamptz,
    last_checked_at       timestamptz,
    last_valid_at         timestamptz,
    next_check_at         timestamptz NOT NULL DEFAULT now(),
    probe_cache           jsonb,
    notes                 text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    replaced_at           timestamptz,
    removed_at            timestamptz,
    CONSTRAINT tokens_removed_state CHECK ((state = 'removed') = (removed_at IS NOT NULL)),
    CONSTRAINT tokens_live_has_secret CHECK (removed_at IS NOT NULL OR token_ciphertext IS NOT NULL)
);
CREATE UNIQUE INDEX tokens_label_live ON tokens (lower(label)) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX tokens_fingerprint_live ON tokens (fingerprint) WHERE removed_at IS NULL;
CREATE INDEX tokens_due ON tokens (next_check_at, id);
CREATE INDEX tokens_state ON tokens (state);

CREATE TABLE runs (
    id          bigserial PRIMARY KEY,
    dag_run_id  text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    dry_run     boolean NOT NULL DEFAULT false,
    forced      boolean NOT NULL DEFAULT false,
    state       text NOT NULL DEFAULT 'running',
    summary     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_started ON runs (started_at DESC);

-- One row per probe. A check is stored pending (applied_at NULL, with its probe) and applied later.
CREATE TABLE checks (
    id                bigserial PRIMARY KEY,
    token_id          bigint NOT NULL REFERENCES tokens (id),
    run_id            bigint REFERENCES runs (id),
    checked_at        timestamptz NOT NULL DEFAULT now(),
    outcome           text NOT NULL,
    fault_code        integer,
    detail            text,
    missing_operation text,
    duration_ms       integer NOT NULL DEFAULT 0,
    calls             integer NOT NULL DEFAULT 0,
    debtors           integer,
    companies         integer,
    unchanged         boolean NOT NULL DEFAULT false,
    probe             jsonb,
    applied_at        timestamptz
);
CREATE INDEX checks_token_time ON checks (token_id, checked_at DESC);
CREATE INDEX checks_pending ON checks (checked_at, id) WHERE applied_at IS NULL;
CREATE INDEX checks_run ON checks (run_id);

CREATE TABLE reach_debtors (
    token_id   bigint NOT NULL REFERENCES tokens (id),
    debtor_id  integer NOT NULL,
    number     text,
    name       text,
    tags       jsonb NOT NULL DEFAULT '[]',
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    lost_at    timestamptz,
    PRIMARY KEY (token_id, debtor_id)
);

CREATE TABLE reach_companies (
    token_id   bigint NOT NULL REFERENCES tokens (id),
    company_id integer NOT NULL,
    debtor_id  integer,
    number     integer,
    name       text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    lost_at    timestamptz,
    PRIMARY KEY (token_id, company_id)
);
CREATE INDEX reach_companies_current ON reach_companies (company_id, token_id) WHERE lost_at IS NULL;

CREATE TABLE reach_events (
    id        bigserial PRIMARY KEY,
    token_id  bigint NOT NULL REFERENCES tokens (id),
    run_id    bigint REFERENCES runs (id),
    at        timestamptz NOT NULL DEFAULT now(),
    change    text NOT NULL CHECK (change IN ('gained', 'lost', 'moved', 'tags_changed', 'renamed')),
    entity    text NOT NULL CHECK (entity IN ('debtor', 'company')),
    entity_id integer NOT NULL,
    debtor_id integer,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX reach_events_token ON reach_events (token_id, at DESC);
CREATE INDEX reach_events_entity ON reach_events (token_id, entity, entity_id, at DESC);

CREATE TABLE links (
    id           bigserial PRIMARY KEY,
    customer_ref text NOT NULL CHECK (customer_ref <> ''),
    environment  text,
    company_id   integer NOT NULL CHECK (company_id > 0),
    debtor_id    integer,
    wanted       boolean NOT NULL DEFAULT true,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active', 'suspended', 'cancelled')),
    token_id     bigint REFERENCES tokens (id),
    reason       text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    suspended_at timestamptz,
    cancelled_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT links_active_has_token CHECK (state <> 'active' OR token_id IS NOT NULL),
    CONSTRAINT links_cancelled_unwanted CHECK (wanted = (state <> 'cancelled'))
);
CREATE UNIQUE INDEX links_one_wanted ON links (coalesce(environment, ''), company_id) WHERE wanted;
CREATE INDEX links_company ON links (company_id);
CREATE INDEX links_token ON links (token_id) WHERE token_id IS NOT NULL;

CREATE TABLE link_events (
    id            bigserial PRIMARY KEY,
    link_id       bigint NOT NULL REFERENCES links (id),
    run_id        bigint REFERENCES runs (id),
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL DEFAULT 'sync',
    from_state    text,
    to_state      text NOT NULL,
    from_token_id bigint,
    to_token_id   bigint,
    reason        text
);
CREATE INDEX link_events_link ON link_events (link_id, at DESC);

-- Alert state: one open problem per token and kind (a provider incident has no token).
CREATE TABLE problems (
    id               bigserial PRIMARY KEY,
    token_id         bigint REFERENCES tokens (id),
    kind             text NOT NULL,
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    opened_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    cause_cleared_at timestamptz,
    resolved_at      timestamptz,
    escalated_at     timestamptz,
    last_notified_at timestamptz,
    muted            boolean NOT NULL DEFAULT false,
    detail           jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT problems_resolved_has_time CHECK (state = 'open' OR resolved_at IS NOT NULL)
);
CREATE UNIQUE INDEX problems_one_open ON problems (coalesce(token_id, 0), kind) WHERE state = 'open';
CREATE INDEX problems_token ON problems (token_id);

CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    problem_id      bigint REFERENCES problems (id),
    event           text NOT NULL,
    recipients      text[] NOT NULL,
    subject         text NOT NULL,
    body_text       text NOT NULL,
    body_html       text,
    message_id      text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed'))
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state IN ('pending', 'sending');

-- Audit trail: every CLI action on a token and every state change the sync makes.
CREATE TABLE token_events (
    id         bigserial PRIMARY KEY,
    token_id   bigint NOT NULL REFERENCES tokens (id),
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    from_state text,
    to_state   text,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX token_events_token ON token_events (token_id, at DESC);
