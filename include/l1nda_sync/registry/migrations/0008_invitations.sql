-- 0008: invitations to the customer page (issue 19): a one-time link to consent to L1NDA's Nmbrs REST app
-- (purpose 'rest') or to hand over a new SOAP token (purpose 'token').
-- The link's value is never stored: only its SHA-256 (value_hash, to find it) and the random nonce it is derived
-- from with the web secret (HMAC), so a reminder can repeat the same link while the secret is unchanged.
-- State: created -> sent (its mail queued) -> opened (the page was shown) -> used (a finished consent or an accepted
-- token, set in the same transaction as what it made); expired once expires_at passed or a newer one replaced it.
CREATE TABLE invitations (
    id               bigserial PRIMARY KEY,
    value_hash       text NOT NULL UNIQUE CHECK (value_hash ~ '^[0-9a-f]{64}$'),
    nonce            text NOT NULL CHECK (nonce ~ '^[0-9a-f]{64}$'),
    customer_ref     text NOT NULL CHECK (customer_ref <> ''),
    contact          text NOT NULL CHECK (contact <> ''),
    purpose          text NOT NULL CHECK (purpose IN ('rest', 'token')),
    language         text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'nl')),
    token_id         bigint REFERENCES tokens (id),
    problem_id       bigint REFERENCES problems (id),
    state            text NOT NULL DEFAULT 'created' CHECK (state IN ('created', 'sent', 'opened', 'used', 'expired')),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    sent_at          timestamptz,
    opened_at        timestamptz,
    used_at          timestamptz,
    result_token_id  bigint REFERENCES tokens (id),
    CONSTRAINT invitations_expiry CHECK (expires_at > created_at),
    CONSTRAINT invitations_token_purpose CHECK (purpose = 'rest' OR token_id IS NOT NULL),
    CONSTRAINT invitations_used CHECK ((state = 'used') = (used_at IS NOT NULL))
);
-- One open invitation per problem: a rerun or a reminder reuses it instead of making another.
CREATE UNIQUE INDEX invitations_open_per_problem ON invitations (problem_id)
    WHERE problem_id IS NOT NULL AND state IN ('created', 'sent', 'opened');
CREATE INDEX invitations_customer ON invitations (customer_ref);

-- The consent a REST invitation started: its callback finds the invitation through the authorization.
ALTER TABLE rest_authorizations ADD COLUMN invitation_id bigint REFERENCES invitations (id);
