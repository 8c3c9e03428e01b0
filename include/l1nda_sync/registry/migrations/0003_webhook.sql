-- Events for the L1NDA platform's webhook (Airflow connection l1nda_api), written in the same transaction as
-- the change they report, and only while that connection is configured. Delivered at least once; the receiver
-- drops repeats by the Idempotency-Key header (the row's key).
CREATE TABLE webhook_outbox (
    id              bigserial PRIMARY KEY,
    idempotency_key uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event           text NOT NULL CHECK (event IN ('token.state_changed', 'link.state_changed')),
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed'))
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id) WHERE state = 'pending';
