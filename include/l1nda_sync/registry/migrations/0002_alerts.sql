-- 0002: what the alerts need on top of 0001 (from include/l1nda_sync/alerts/migrations_needed.sql):
-- problem stage and unmute time, outbox audience and language, the 'uncertain' outbox state.

-- problems.stage: 'suspected' = opened silently (revoked: one unconfirmed 1001), 'confirmed' = announced kind.
ALTER TABLE problems ADD COLUMN IF NOT EXISTS stage text NOT NULL DEFAULT 'confirmed';
ALTER TABLE problems DROP CONSTRAINT IF EXISTS problems_stage_check;
ALTER TABLE problems ADD CONSTRAINT problems_stage_check CHECK (stage IN ('suspected', 'confirmed'));
ALTER TABLE problems DROP CONSTRAINT IF EXISTS problems_kind_check;
ALTER TABLE problems ADD CONSTRAINT problems_kind_check CHECK (kind IN (
    'revoked', 'rights_missing', 'no_subscription', 'unreachable', 'access_lost', 'provider_incident'));
-- problems.unmuted_at: reminders restart an interval after an unmute (no backlog).
ALTER TABLE problems ADD COLUMN IF NOT EXISTS unmuted_at timestamptz;

-- outbox.audience/language: who a row is for ('ops' or 'customer') and in which language; threads the mails of
-- one problem per audience (In-Reply-To) and lets `problems list` show what went where.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS audience text NOT NULL DEFAULT 'ops';
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_audience_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_audience_check CHECK (audience IN ('ops', 'customer'));
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT 'en';
-- outbox.state 'uncertain': the sender died between handing a mail to SMTP and marking it sent; never resent.
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_state_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'uncertain'));
CREATE INDEX IF NOT EXISTS outbox_problem ON outbox (problem_id, audience, id);
