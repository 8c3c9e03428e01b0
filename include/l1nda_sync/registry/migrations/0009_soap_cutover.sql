-- 0009: the cutover at the end of Nmbrs' SOAP API (issue 20, docs/migration.md).
-- A SOAP token is 'retired' once the setting soap_end passed: a state, not a flag, so every rule that reads a
-- token's state (the plan claims no retired token, no check moves it, the link rules let it serve nothing and name
-- the reason 'soap_ended') sees it without a second column to forget. Only SOAP tokens are retired.
ALTER TABLE tokens DROP CONSTRAINT IF EXISTS tokens_state_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_state_check CHECK (state IN (
    'new', 'active', 'invalid', 'revoked', 'rejected', 'rights_missing', 'no_subscription',
    'unreachable', 'disabled', 'removed', 'retired'));
ALTER TABLE tokens ADD CONSTRAINT tokens_retired_soap CHECK (state <> 'retired' OR kind = 'soap_token');

-- 'soap_ended': one per retired SOAP token whose links the cutover suspended, mailed once to the token's contact
-- (a business customer: how to connect through REST, with an invitation link; an accountant: one summary of
-- its debtors). 'soap_cutover': one for operations, the whole cutover in one mail.
INSERT INTO problem_kinds (kind) VALUES ('soap_ended'), ('soap_cutover') ON CONFLICT DO NOTHING;
