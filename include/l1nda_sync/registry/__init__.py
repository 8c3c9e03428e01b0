"""The token registry in PostgreSQL: versioned schema, tokens encrypted at rest, links, audit trail.

Public entry points:
- `schema.upgrade(conn)`, `schema.status(conn)`, `schema.require_current(conn)` (call at the start of a run);
- `crypto.TokenCipher` (encrypt, decrypt -> Secret, fingerprint) and `crypto.generate_key()`;
- `tokens.TokenStore` (add, replace, reveal -> Secret, rotate) and `tokens.list_tokens/get_token/disable/
  enable/remove`; `links.request_link/list_links/cancel_link`; `details.token_detail`;
- `connections.ConnectionStore` (start / take a consent, save a REST connection), `grant_store.RegistryGrantStore`
  (rotating refresh tokens under a row lock) and `rest_entities` (L1NDA keys for REST debtors and companies);
- `db.connect(url)` and `db.transaction(conn)`.
"""
