"""The optional webhook to the L1NDA platform: token and link state changes as JSON POSTs.

Off unless the Airflow connection `l1nda_api` (providers-http) exists. Events are written to `webhook_outbox`
in the same transaction as the change (`WebhookHooks`), and `deliver` posts them in order with an
Idempotency-Key header, retrying with backoff: at least once, so the receiver drops repeats by that key.
"""

from l1nda_sync.webhook.delivery import deliver, webhook_enabled
from l1nda_sync.webhook.hooks import WebhookHooks

__all__ = ["WebhookHooks", "deliver", "webhook_enabled"]
