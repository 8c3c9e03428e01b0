"""The sync engine: revalidate tokens, rediscover their reach, reconcile links.

Pure decisions live in `token_state`, `reach`, `links` and `breaker` (plain functions over plain records);
the modules that talk to Nmbrs and PostgreSQL call them.
"""
