"""The token-health pages on a big registry: each page's queries and rendering, in milliseconds.

`python -m l1nda_dev.bench.ui_pages [--tokens 50000] [--repeat 7]` (also `python -m l1nda_dev.bench --ui-pages`):
an embedded PostgreSQL, the registry migrated to head and filled with one bulk INSERT ... SELECT per table
(generate_series; ciphertexts are placeholders, nothing is decrypted on these pages), then every page's
`queries.*` call and its template rendered `--repeat` times on one connection in a read-only transaction, as a
request does. It prints the median and the slowest run per page, and the plan of the list queries (EXPLAIN
ANALYZE) so a missing index shows. Airflow's login (a JWT check) and HTTP are not in these figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

SEED_SQL = [
    # credentials: 10% REST connections, states spread, labels as customer names
    """INSERT INTO tokens (label, level, username, token_ciphertext, token_hint, fingerprint, contact_emails, state,
                           last_checked_at, last_outcome, next_check_at, kind)
       SELECT 'Bench customer ' || lpad(g::text, 6, '0'), CASE WHEN g % 20 = 0 THEN 'accountant' ELSE 'debtor' END,
              'user' || g || '@bench.example', CASE WHEN g % 10 = 3 THEN NULL ELSE 'placeholder' END,
              '…' || lpad((g % 10000)::text, 4, '0'), md5(g::text),
              ARRAY['contact' || g || '@bench.example'],
              (ARRAY['active','active','active','active','active','active','invalid','revoked','unreachable',
                     'new'])[1 + g % 10],
              now() - (g % 3600) * interval '1 second', 'ok', now() + (g % 3600) * interval '1 second',
              CASE WHEN g % 10 = 3 THEN 'rest_connection' ELSE 'soap_token' END
       FROM generate_series(1, %(n)s) g""",
    """INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email)
       SELECT id, 'CUST-' || lpad(id::text, 6, '0'), gen_random_uuid(), 'consent' || id || '@bench.example'
       FROM tokens WHERE kind = 'rest_connection'""",
    """INSERT INTO reach_debtors (token_id, debtor_id, number, name, tags)
       SELECT t.id, t.id * 10 + d, 'D' || (t.id * 10 + d), 'Debtor ' || (t.id * 10 + d) || ' BV',
              CASE WHEN d = 1 THEN '["L1NDA"]'::jsonb ELSE '[]'::jsonb END
       FROM tokens t CROSS JOIN generate_series(1, 2) d""",
    """INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name, lost_at)
       SELECT t.id, t.id * 10 + c, t.id * 10 + 1, c, 'Company ' || (t.id * 10 + c),
              CASE WHEN c = 3 AND t.id % 7 = 0 THEN now() - interval '1 day' END
       FROM tokens t CROSS JOIN generate_series(1, 3) c""",
    """INSERT INTO links (customer_ref, company_id, debtor_id, state, token_id, reason)
       SELECT 'CUST-' || lpad(t.id::text, 6, '0'), t.id * 10 + 1, t.id * 10 + 1,
              (ARRAY['active','active','active','suspended','pending'])[1 + t.id % 5],
              CASE WHEN t.id % 5 = 4 THEN NULL ELSE t.id END,
              (ARRAY['failover','failover','failover','tag_or_filter','requested'])[1 + t.id % 5]
       FROM tokens t""",
    """INSERT INTO link_events (link_id, actor, from_state, to_state, to_token_id, reason, at)
       SELECT l.id, 'sync', 'pending', l.state, l.token_id, l.reason, now() - e * interval '1 hour'
       FROM links l CROSS JOIN generate_series(1, 2) e""",
    """INSERT INTO runs (dag_run_id, started_at, finished_at, state, summary)
       SELECT 'scheduled__' || g, now() - g * interval '10 minutes', now() - g * interval '10 minutes'
              + interval '1 minute', 'success', jsonb_build_object('tokens_checked', 500, 'mails_sent', g % 3)
       FROM generate_series(1, 2000) g""",
    """INSERT INTO checks (token_id, checked_at, outcome, duration_ms, calls, debtors, companies, applied_at)
       SELECT t.id, now() - c * interval '1 hour', 'ok', 120, 2, 2, 3, now() - c * interval '1 hour'
       FROM tokens t CROSS JOIN generate_series(1, 5) c""",
    """INSERT INTO problems (token_id, kind, opened_at, last_seen_at)
       SELECT id, 'revoked', now() - interval '1 day', now() FROM tokens WHERE state = 'revoked' AND id % 50 = 7""",
    """INSERT INTO outbox (problem_id, event, recipients, subject, body_text, message_id, state, audience)
       SELECT p.id, 'opened', ARRAY['ops@bench.example'], 'Nmbrs token revoked: ' || p.id, 'body',
              '<bench-' || p.id || '@l1nda>', CASE WHEN p.id % 4 = 0 THEN 'uncertain' ELSE 'sent' END, 'ops'
       FROM problems p""",
    "ANALYZE",
]


def seed(url: str, tokens: int) -> float:
    import psycopg2

    started = time.perf_counter()
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for sql in SEED_SQL:
                cur.execute(sql.replace("%(n)s", str(int(tokens))))  # no parameters: `%` stays modulo
    finally:
        conn.close()
    return time.perf_counter() - started


def _timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs), max(runs)


def pages(url: str, tokens: int, repeat: int) -> list[tuple[str, float, float]]:
    """(page, median ms, slowest ms) for each page: its queries and its HTML."""
    from l1nda_sync.registry import db
    from l1nda_sync.settings import Settings
    from l1nda_sync.ui import filters, queries
    from l1nda_sync.ui.rendering import html

    settings = Settings.load(env={"L1NDA_DATABASE_URL": url}, use_airflow=False)
    now = datetime.now(UTC)
    common = {"root": "/l1nda", "user": "bench", "airflow_root": ""}
    one = tokens // 2 + 1
    cache = queries.ReadinessCache()
    last_page = -(-tokens // filters.PER_PAGE)
    cases: list[tuple[str, Callable[[db.Connection], object]]] = [
        ("overview (readiness cached)", lambda c: html("overview.html", {
            **common, "title": "t", **queries.overview(c, settings, now, cache)})),
        ("migration readiness (every 5 min)", lambda c: queries.readiness(c, now)),
        ("credentials, first page", lambda c: _list(c, {})),
        ("credentials, state=revoked", lambda c: _list(c, {"state": "revoked"})),
        ("credentials, customer=CUST-000123", lambda c: _list(c, {"customer": "CUST-000123"})),
        ("credentials, customer=customer 0123 (name part)", lambda c: _list(c, {"customer": "customer 0123"})),
        (f"credentials, page {last_page // 2} (deep)", lambda c: _list(c, {"page": str(last_page // 2)})),
        (f"credentials, page {last_page} (last)", lambda c: _list(c, {"page": str(last_page)})),
        (f"credential {one}", lambda c: html("credential.html", {
            **common, "title": "t", "csrf": {"recheck": "x", "dry-run": "x", "invite": "x"}, "mute_csrf": {},
            "flash": None, "may_operate": True, **queries.credential(c, one)})),
        ("links, first page", lambda c: html("links.html", {**common, "title": "t",
                                                           **queries.links(c, filters.links({}))})),
        ("links, state=pending", lambda c: html("links.html", {
            **common, "title": "t", **queries.links(c, filters.links({"state": "pending"}))})),
        ("links, customer=CUST-000123", lambda c: html("links.html", {
            **common, "title": "t", **queries.links(c, filters.links({"customer": "CUST-000123"}))})),
        ("outbox", lambda c: html("outbox.html", {**common, "title": "t", "resend_csrf": _AnyKey(), "flash": None,
                                                  "may_operate": True, **queries.outbox(c)})),
    ]

    def _list(conn: db.Connection, params: dict[str, str]) -> object:
        return html("credentials.html", {**common, "title": "t",
                                         **queries.credentials(conn, filters.credentials(params))})

    results = []
    conn = db.connect(url)
    try:
        conn.set_session(readonly=True)
        for name, case in cases:
            case(conn)  # warm the plan cache and the buffers once, as a running server is
            median, worst = _timed(lambda case=case: case(conn), repeat)  # type: ignore[misc]
            results.append((name, median, worst))
    finally:
        conn.close()
    return results


class _AnyKey(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "x"


def explain(url: str) -> list[str]:
    """The plan of the credentials list's two costliest shapes, to see the indexes used."""
    import psycopg2

    from l1nda_sync.registry import health

    captured: list[tuple[str, Any]] = []

    class Capturing(psycopg2.extensions.cursor):
        def execute(self, query: Any, vars: Any = None) -> None:
            captured.append((query, vars))
            super().execute(query, vars)

    lines = []
    conn = psycopg2.connect(url)
    try:
        with conn.cursor(cursor_factory=Capturing) as cur:
            health.list_credentials(cur, customer="CUST-000123", limit=50, offset=0)
            health.list_links(cur, state="pending", limit=50, offset=0)
        with conn.cursor() as plain:
            for sql, args in captured[1:2] + captured[-2:-1]:  # the two pages' rows
                plain.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql, args)
                lines += [r[0] for r in plain.fetchall()] + [""]
    finally:
        conn.close()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m l1nda_dev.bench.ui_pages", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50_000, help="credentials in the registry (default 50000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per page (default 7)")
    parser.add_argument("--explain", action="store_true", help="print the plans of the list queries")
    args = parser.parse_args(argv)
    if args.tokens < 100 or args.repeat < 1:
        print("ui_pages: --tokens must be >= 100 and --repeat >= 1", file=sys.stderr)
        return 2

    from l1nda_dev.postgres import create_database, embedded_postgres
    from l1nda_sync.registry import db, schema

    with embedded_postgres() as pg:
        url = create_database(pg.url, "l1nda_bench_ui", replace=True)
        conn = db.connect(url)
        try:
            schema.upgrade(conn)
        finally:
            conn.close()
        seconds = seed(url, args.tokens)
        print(f"registry: {args.tokens} credentials, {3 * args.tokens} companies reached, {args.tokens} links, "
              f"{5 * args.tokens} checks (seeded in {seconds:.1f} s)")
        results = pages(url, args.tokens, args.repeat)
        width = max(len(name) for name, _, _ in results)
        print(f"\n{'page (queries + HTML)':<{width}}  median ms  slowest ms")
        for name, median, worst in results:
            print(f"{name:<{width}}  {median:9.1f}  {worst:10.1f}")
        if args.explain:
            print("\n" + "\n".join(explain(url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
