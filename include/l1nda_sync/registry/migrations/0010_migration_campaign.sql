-- 0010: the migration campaign (issue 20, docs/migration.md): invitations to consent through REST before soap_end.
-- problems.subject: what a problem is about when that is not a token. The campaign opens one 'migration_invite'
-- problem per (customer, contact) (subject 'CUSTOMER contact', token_id NULL), so one open problem per key is the
-- unique index's (token, kind, subject); every older kind keeps subject NULL and its old key.
ALTER TABLE problems ADD COLUMN subject text CHECK (subject IS NULL OR subject <> '');
DROP INDEX IF EXISTS problems_one_open;
CREATE UNIQUE INDEX problems_one_open ON problems (coalesce(token_id, 0), kind, coalesce(subject, ''))
    WHERE state = 'open';
-- 'migration_invite': a customer with soap_only links, invited (and reminded) through its contact;
-- 'migration_accountant': an accountant token's contact, one summary of its debtors that must each consent;
-- 'migration_weekly': operations' weekly countdown and the customers that did not react.
INSERT INTO problem_kinds (kind) VALUES ('migration_invite'), ('migration_accountant'), ('migration_weekly')
    ON CONFLICT DO NOTHING;

-- A debtor's contact for the campaign (an accountant's debtor has none in `tokens`): added by an operator with
-- `l1nda-sync migration contact`; contacts of earlier invitations count too.
CREATE TABLE customer_contacts (
    customer_ref text NOT NULL CHECK (customer_ref <> ''),
    contact      text NOT NULL CHECK (contact <> ''),
    language     text CHECK (language IN ('en', 'nl')),
    added_by     text NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_ref, contact)
);
