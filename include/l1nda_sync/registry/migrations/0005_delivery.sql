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

-- Two problem kinds for operations: 'outbox_stuck' (mails uncertain or failed) and 'webhook_failing'.
INSERT INTO problem_kinds (kind) VALUES ('outbox_stuck'), ('webhook_failing') ON CONFLICT DO NOTHING;
