"""Alert e-mails: problems (not messages), written to an outbox with the state change that causes them, and
delivered at most once through the Airflow SMTP connection.

- `problems`: the pure decisions (`plan_problem`, `plan_quiet`, `token_causes`, recipients by kind).
- `hooks.AlertHooks(settings)`: the engine's apply and link hooks.
- `sweep.sweep(conn, now, settings)`: quiet-period resolution, reminders, provider incident clearing.
- `outbox.drain(conn, now, settings)`: sends due mails.
- `cli.register(subparsers)`: `l1nda-sync problems list|mute|unmute`.
"""
