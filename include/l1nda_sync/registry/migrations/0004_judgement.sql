-- Judging Nmbrs' answers over time (no false alarms):
-- * `rejected`: a token whose first checks since it was registered (or replaced) are confirmed 1001: the token
--   we received never worked, which is not the same news as "your working token was revoked".
-- * `refusal`: which refusal (invalid = 1001, rights_missing = 1002, no_subscription = 1004) the streak counted
--   by consecutive_invalid / first_invalid_at is of; a refusal moves the token only once confirmed.
-- * `drop_since`: a valid answer whose reach dropped sharply (to zero, or more than a share of it) was first seen
--   then; the stored reach stays until a later answer at least the confirmation spacing later confirms it.
-- * `last_outcome`: the outcome of the last applied check; a run that rechecks a failing token also checks a few
--   healthy ones (witnesses), so the circuit breaker judges with evidence from both.
-- * `claimed_by` / `claimed_until`: the run that is checking the token; another run (a manual one) never
--   re-probes a token that a live claim holds.
ALTER TABLE tokens DROP CONSTRAINT IF EXISTS tokens_state_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_state_check CHECK (state IN (
    'new', 'active', 'invalid', 'revoked', 'rejected', 'rights_missing', 'no_subscription',
    'unreachable', 'disabled', 'removed'));
ALTER TABLE tokens
    ADD COLUMN refusal       text CHECK (refusal IN ('invalid', 'rights_missing', 'no_subscription')),
    ADD COLUMN drop_since    timestamptz,
    ADD COLUMN last_outcome  text,
    ADD COLUMN claimed_by    bigint,
    ADD COLUMN claimed_until timestamptz;
UPDATE tokens SET refusal = 'invalid' WHERE consecutive_invalid > 0;

-- The circuit breaker reads the latest check of each token inside a sliding window.
CREATE INDEX checks_time ON checks (checked_at);

-- Problem kinds 'rejected' (a token that never worked) and 'unknown_answers' (a share of checks ended in answers
-- L1NDA cannot read). The kind check is widened, not rewritten: whatever kinds
-- it already allows stay allowed.
DO $$
DECLARE
    allowed text[];
BEGIN
    SELECT coalesce(array_agg(DISTINCT m[1]), ARRAY[]::text[]) INTO allowed
    FROM pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS m
    WHERE c.conname = 'problems_kind_check' AND c.conrelid = 'problems'::regclass;
    allowed := allowed || ARRAY['rejected', 'unknown_answers'];
    ALTER TABLE problems DROP CONSTRAINT IF EXISTS problems_kind_check;
    EXECUTE format('ALTER TABLE problems ADD CONSTRAINT problems_kind_check CHECK (kind = ANY (%L::text[]))',
                   (SELECT array_agg(DISTINCT k ORDER BY k) FROM unnest(allowed) AS k));
END
$$;
