"""The token registry in PostgreSQL: versioned schema, tokens encrypted at rest, links, audit trail.

Public entry points:
- `schema.upgrade(conn)`, `schema.status(conn)`, `schema.require_current(conn)` (call at the start of a run);
- `crypto.TokenCipher` (encrypt, decrypt -> Secret, fingerprint) and `crypto.generate_key()`;
- `tokens.TokenStore` (add, replace, reveal -> Secret, rotate) and `tokens.list_tokens/get_token/disable/
  enable/remove`; `links.request_link/list_links/cancel_link`; `details.token_detail`;
- `db.connect(url)` and `db.transaction(conn)`.
"""
