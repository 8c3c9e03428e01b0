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

-- Problem kinds: the allowed kinds become rows of `problem_kinds` that problems.kind references, so a migration
-- that adds a kind inserts a row instead of rewriting (and parsing) a CHECK constraint. Then the kinds of this
-- change: 'rejected' (a token that never worked) and 'unknown_answers' (a share of checks ended in answers L1NDA
-- cannot read).
CREATE TABLE problem_kinds (kind text PRIMARY KEY);
INSERT INTO problem_kinds (kind) VALUES
    ('revoked'), ('rights_missing'), ('no_subscription'), ('unreachable'), ('access_lost'), ('provider_incident'),
    ('rejected'), ('unknown_answers');
INSERT INTO problem_kinds (kind) SELECT DISTINCT kind FROM problems ON CONFLICT DO NOTHING;
ALTER TABLE problems DROP CONSTRAINT IF EXISTS problems_kind_check;
ALTER TABLE problems ADD CONSTRAINT problems_kind_fkey FOREIGN KEY (kind) REFERENCES problem_kinds (kind);
