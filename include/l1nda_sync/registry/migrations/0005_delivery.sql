-- 0005: delivery guarantees for the mail outbox and the webhook outbox (issue 14).

-- Mails. A claimed row ('sending') carries its claim's expiry; `handover_at` is set (and committed) only after
-- the SMTP server answered DATA with 354 and before the first byte of the message is sent. A 'sending' row
-- without it was never handed over and returns to 'pending' when its claim expires; only a row with it may
-- become 'uncertain'. 'dropped': an operator gave up on the row (`l1nda-sync outbox drop`), with a reason.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_until timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS handover_at timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS dropped_at timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS dropped_reason text;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS dropped_by text;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_state_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'uncertain', 'dropped'));
CREATE INDEX IF NOT EXISTS outbox_stuck ON outbox (id) WHERE state IN ('uncertain', 'failed');

-- Webhook events. 'failed' now means parked: the receiver refused this event for good (a 4xx other than 408
-- and 429); later events go on. Transient failures retry for as long as it takes; `first_failed_at` is when
-- the current streak of failures of that event began (cleared when it is sent). 'dropped': an operator gave up.
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS first_failed_at timestamptz;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS dropped_at timestamptz;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS dropped_reason text;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS dropped_by text;
ALTER TABLE webhook_outbox DROP CONSTRAINT IF EXISTS webhook_outbox_state_check;
ALTER TABLE webhook_outbox ADD CONSTRAINT webhook_outbox_state_check
    CHECK (state IN ('pending', 'sent', 'failed', 'dropped'));
CREATE INDEX IF NOT EXISTS webhook_outbox_parked ON webhook_outbox (id) WHERE state = 'failed';

-- Two problem kinds for operations: 'outbox_stuck' (mails uncertain or failed) and 'webhook_failing'. The kind
-- check is widened, not rewritten: whatever kinds it already allows (other migrations add theirs) stay allowed.
-- It reads both forms PostgreSQL may show (ARRAY['a'::text, ...] and '{a,...}'::text[]) and writes the first.
DO $$
DECLARE
    definition text;
    allowed text[] := ARRAY[]::text[];
BEGIN
    SELECT pg_get_constraintdef(c.oid) INTO definition
    FROM pg_constraint c WHERE c.conname = 'problems_kind_check' AND c.conrelid = 'problems'::regclass;
    IF definition ~ '''\{' THEN
        allowed := string_to_array((regexp_match(definition, '''\{([^}]*)\}'''))[1], ',');
    ELSIF definition IS NOT NULL THEN
        SELECT coalesce(array_agg(m[1]), ARRAY[]::text[]) INTO allowed
        FROM regexp_matches(definition, '''([a-z_]+)''', 'g') AS m;
    END IF;
    allowed := allowed || ARRAY['outbox_stuck', 'webhook_failing'];
    ALTER TABLE problems DROP CONSTRAINT IF EXISTS problems_kind_check;
    EXECUTE 'ALTER TABLE problems ADD CONSTRAINT problems_kind_check CHECK (kind IN ('
            || (SELECT string_agg(DISTINCT quote_literal(k), ', ') FROM unnest(allowed) AS k) || '))';
END
$$;
