-- 0006: keys and input (issue 14).

-- registry_keys: secrets of the registry itself, each encrypted under the Fernet keys (L1NDA_FERNET_KEYS).
-- 'fingerprint_key' is the HMAC key of tokens.fingerprint: made once (by the first `tokens add`, `tokens replace`
-- or `keys rotate` after this migration, which also re-fingerprints every live token under it), re-encrypted but
-- never changed by `keys rotate`, so duplicate detection no longer depends on which Fernet keys are configured.
CREATE TABLE IF NOT EXISTS registry_keys (
    name       text PRIMARY KEY CHECK (name IN ('fingerprint_key')),
    ciphertext text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- problems.kind 'link_pending': a requested link that no token reaches for longer than link_pending_after.
INSERT INTO problem_kinds (kind) VALUES ('link_pending') ON CONFLICT DO NOTHING;

-- links.customer_ref in its canonical form (trimmed, upper case), as `links request` now stores it, so an
-- older 'cust-anker' and a new 'CUST-ANKER' are one customer. References that are not one word stay as they are.
UPDATE links SET customer_ref = upper(btrim(customer_ref))
WHERE customer_ref <> upper(btrim(customer_ref))
  AND btrim(customer_ref) ~ '^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$';

CREATE INDEX IF NOT EXISTS links_pending ON links (requested_at) WHERE state = 'pending' AND wanted;
