-- 0007: REST connections beside SOAP tokens (issue 18, docs/rest-connections.md).
-- Existing rows keep working and no data is rewritten: every token is a 'soap_token'; its checks, reach and links
-- are untouched.

-- A credential has a kind. A REST connection is a tokens row like any other (checks, reach, links, problems, the
-- DAG's token_ids all key on tokens.id) whose secrets live in rest_connections: its token_ciphertext stays NULL,
-- it is always debtor level, its username is the consenting user's e-mail and its fingerprint an HMAC of
-- 'rest:<client id>:<Nmbrs user id>' under the registry's fingerprint key (one connection per user and app).
ALTER TABLE tokens
    ADD COLUMN kind text NOT NULL DEFAULT 'soap_token' CHECK (kind IN ('soap_token', 'rest_connection'));
ALTER TABLE tokens DROP CONSTRAINT tokens_live_has_secret;
ALTER TABLE tokens ADD CONSTRAINT tokens_live_has_secret
    CHECK (removed_at IS NOT NULL OR token_ciphertext IS NOT NULL OR kind = 'rest_connection');
ALTER TABLE tokens ADD CONSTRAINT tokens_rest_connection_shape
    CHECK (kind <> 'rest_connection' OR (level = 'debtor' AND token_ciphertext IS NULL));
CREATE INDEX tokens_kind ON tokens (kind) WHERE removed_at IS NULL;

-- The secrets and facts of a REST connection. Ciphertexts are Fernet under the registry's keys (as
-- tokens.token_ciphertext); both are cleared when the connection is removed. `generation` counts rotations of
-- the refresh token (single use at Nmbrs): a save that does not hold the generation it read saves nothing.
-- refresh_generation / refresh_started_at: "a refresh of this generation was sent" (committed before the refresh
-- POST, cleared by the save of its answer). Still naming the current generation means the answer or its save was
-- lost and Nmbrs may have spent the token: an invalid_grant then is L1NDA's loss, not the customer's withdrawal.
CREATE TABLE rest_connections (
    token_id           bigint PRIMARY KEY REFERENCES tokens (id),
    customer_ref       text NOT NULL CHECK (customer_ref <> ''),
    refresh_ciphertext text,
    access_ciphertext  text,
    access_expires_at  timestamptz,
    scopes             text[] NOT NULL DEFAULT '{}',
    user_id            uuid NOT NULL,
    user_email         text NOT NULL CHECK (user_email <> ''),
    debtor_ids         uuid[] NOT NULL DEFAULT '{}',
    generation         bigint NOT NULL DEFAULT 0 CHECK (generation >= 0),
    refreshed_at       timestamptz,
    refresh_generation bigint,
    refresh_started_at timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rest_connections_refresh_marker CHECK ((refresh_generation IS NULL) = (refresh_started_at IS NULL)),
    CONSTRAINT rest_connections_access_has_expiry CHECK (access_ciphertext IS NULL OR access_expires_at IS NOT NULL)
);
CREATE INDEX rest_connections_customer ON rest_connections (customer_ref);

-- A started consent (`connections start`): the OAuth2 `state` is random and stored only as its SHA-256 hash; the
-- PKCE verifier is encrypted. Single use (used_at), expiring after the setting rest_authorization_ttl; token_id
-- is the connection its callback made.
CREATE TABLE rest_authorizations (
    id                  bigserial PRIMARY KEY,
    state_hash          text NOT NULL UNIQUE CHECK (state_hash ~ '^[0-9a-f]{64}$'),
    verifier_ciphertext text,
    customer_ref        text NOT NULL CHECK (customer_ref <> ''),
    contact             text NOT NULL CHECK (contact <> ''),
    language            text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'nl')),
    label               text CHECK (label <> '' AND length(label) <= 100),
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz,
    token_id            bigint REFERENCES tokens (id),
    CONSTRAINT rest_authorizations_expiry CHECK (expires_at > created_at),
    CONSTRAINT rest_authorizations_connection_used CHECK (token_id IS NULL OR used_at IS NOT NULL)
);
CREATE INDEX rest_authorizations_open ON rest_authorizations (expires_at) WHERE used_at IS NULL;

-- L1NDA's integer key of every REST debtor and company (reach, links and reach events keep integer keys):
-- * match 'number' / 'operator': the SOAP id of the same debtor or company (> 0);
-- * 'unmatched' / 'ambiguous': a negative key from rest_unmatched_keys, kept in the reach, never linkable
--   (links.company_id > 0); `candidates` holds the SOAP ids an operator may choose from;
-- * 'new' (an operator said it has no SOAP counterpart): a key from rest_only_keys, from 2,000,000,000 up.
CREATE SEQUENCE rest_unmatched_keys AS integer START 1 MINVALUE 1;
CREATE SEQUENCE rest_only_keys AS integer START 2000000000 MINVALUE 2000000000;

CREATE TABLE rest_entities (
    uuid          uuid PRIMARY KEY,
    entity        text NOT NULL CHECK (entity IN ('debtor', 'company')),
    key           integer NOT NULL CHECK (key <> 0),
    customer_ref  text NOT NULL CHECK (customer_ref <> ''),
    number        text,
    debtor_uuid   uuid,
    debtor_number text,
    name          text,
    match         text NOT NULL CHECK (match IN ('number', 'operator', 'new', 'unmatched', 'ambiguous')),
    candidates    integer[] NOT NULL DEFAULT '{}',
    matched_by    text,
    matched_at    timestamptz,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rest_entities_key_fits_match CHECK (
        CASE match
            WHEN 'unmatched' THEN key < 0
            WHEN 'ambiguous' THEN key < 0
            WHEN 'new' THEN key >= 2000000000
            ELSE key > 0
        END),
    CONSTRAINT rest_entities_company_has_debtor CHECK (entity = 'debtor' OR debtor_uuid IS NOT NULL)
);
-- One SOAP id is one REST id (per entity): two checks resolving at once cannot both take the same key.
CREATE UNIQUE INDEX rest_entities_key ON rest_entities (entity, key);
CREATE INDEX rest_entities_open ON rest_entities (customer_ref) WHERE match IN ('unmatched', 'ambiguous');

-- problems.kind 'consent_revoked': a REST connection's consent was withdrawn (or its refresh token expired).
INSERT INTO problem_kinds (kind) VALUES ('consent_revoked') ON CONFLICT DO NOTHING;
