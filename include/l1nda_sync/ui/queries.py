"""What each page shows, read in one read-only transaction: the registry's own functions composed into the view
models the HTML pages and their JSON twins share. No SQL here beyond what `registry.health` and the registry
modules hold."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1nda_sync.alerts import store
from l1nda_sync.migration import world
from l1nda_sync.migration.readiness import Readiness, assess
from l1nda_sync.migration.report import countdown
from l1nda_sync.registry import health
from l1nda_sync.registry.db import reading
from l1nda_sync.registry.details import token_detail
from l1nda_sync.ui import filters

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

    from l1nda_sync.settings import Settings


@dataclass(frozen=True, slots=True)
class ProblemView:
    """An open problem with the name of its credential."""

    """An open problem with the name of its credential."""

    id: int
    kind: str
    stage: str
    token_id: int | None
    token_label: str | None
    subject: str | None
    opened_at: datetime
    last_seen_at: datetime
    muted: bool


def _problems(conn: Connection, *, token_id: int | None = None, limit: int = 50) -> list[ProblemView]:
    with reading(conn) as cur:
        rows = store.list_problems(cur, state="open", token_id=token_id, limit=limit)
        labels = health.token_labels(cur, sorted({r.token_id for r in rows if r.token_id is not None}))
        cur.execute("SELECT id, subject FROM problems WHERE id = ANY(%s)", ([r.id for r in rows],))
        subjects = dict(cur.fetchall())
    return [ProblemView(r.id, r.kind.value, r.stage.value, r.token_id,
                        labels.get(r.token_id) if r.token_id is not None else None, subjects.get(r.id),
                        r.opened_at, r.last_seen_at, r.muted) for r in rows]


def readiness(conn: Connection, now: datetime) -> dict[str, Any]:
    """The wanted links' readiness for the end of SOAP (as `l1nda-sync migration status`): the whole world is
    loaded and assessed, seconds on a big registry, so the app keeps it for `READINESS_TTL` (`ReadinessCache`)."""
    with reading(conn) as cur:
        current, _ = world.load(cur)
    rows = assess(current, now)
    totals = Counter(r.readiness.value for r in rows)
    counts = {r.value: totals.get(r.value, 0) for r in Readiness}
    links = len(rows)
    ready = links - counts.get(Readiness.SOAP_ONLY.value, 0)
    return {"readiness_at": now, "links": links, "totals": counts,
            "ready_percent": round(100 * ready / links) if links else 100,
            "customers": len({r.customer_ref for r in rows}),
            "customers_soap_only": len({r.customer_ref for r in rows if r.readiness is Readiness.SOAP_ONLY})}


READINESS_TTL = timedelta(minutes=5)


class ReadinessCache:
    """The last readiness, recomputed when older than `READINESS_TTL` (links move at most once a sync run)."""

    def __init__(self) -> None:
        self._value: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def get(self, conn: Connection, now: datetime) -> dict[str, Any]:
        with self._lock:
            value = self._value
            if value is None or not timedelta(0) <= now - value["readiness_at"] < READINESS_TTL:
                value = self._value = readiness(conn, now)
            return value


def migration(conn: Connection, settings: Settings, now: datetime, cache: ReadinessCache | None = None
              ) -> dict[str, Any]:
    """The countdown to soap_end (always now) and the links' readiness (at most `READINESS_TTL` old)."""
    ready = (cache or ReadinessCache()).get(conn, now)
    return {"now": now, "soap_end": settings.soap_end, "countdown": countdown(now, settings.soap_end),
            "seconds_left": int((settings.soap_end - now).total_seconds()), **ready}


def overview(conn: Connection, settings: Settings, now: datetime, cache: ReadinessCache | None = None
             ) -> dict[str, Any]:
    with reading(conn) as cur:
        counts = health.state_counts(cur)
        runs = health.last_runs(cur, 10)
    by_state: dict[str, dict[str, int]] = {}
    for c in counts:
        by_state.setdefault(c.state, {})[c.kind] = c.count
    return {"counts": counts, "by_state": dict(sorted(by_state.items())),
            "total": sum(c.count for c in counts), "problems": _problems(conn),
            "migration": migration(conn, settings, now, cache), "runs": runs}


def credentials(conn: Connection, chosen: filters.CredentialFilter) -> dict[str, Any]:
    with reading(conn) as cur:
        rows, page = health.list_credentials(cur, state=chosen.state, kind=chosen.kind, customer=chosen.customer,
                                             limit=filters.PER_PAGE, offset=chosen.offset)
    return {"filter": chosen, "credentials": rows, "page": page}


def credential(conn: Connection, token_id: int) -> dict[str, Any]:
    """One credential: what it reaches (debtors with their tags, companies by debtor), its links with reasons and
    history, recent checks, open problems, history and the mails sent about it."""
    with reading(conn) as cur:
        detail = token_detail(conn, token_id, checks=10, events=10)
        links = health.links_of_credential(cur, token_id)
        history = health.link_history(cur, [link.id for link in links])
        mails = health.credential_mails(cur, token_id)
        customer = health.rest_customer(cur, token_id)
    debtor_names = {d.debtor_id: d.name for d in detail.debtors}
    return {"token": detail.token, "customer_ref": customer,
            "customers": sorted({link.customer_ref for link in links} | ({customer} if customer else set())),
            "debtors": detail.debtors, "companies": detail.companies, "debtor_names": debtor_names,
            "lost_debtors": detail.lost_debtors, "lost_companies": detail.lost_companies,
            "checks": detail.checks, "links": links, "link_history": history, "mails": mails,
            "problems": _problems(conn, token_id=token_id), "events": detail.events}


def links(conn: Connection, chosen: filters.LinkFilter) -> dict[str, Any]:
    with reading(conn) as cur:
        rows, page = health.list_links(cur, customer=chosen.customer, state=chosen.state, limit=filters.PER_PAGE,
                                       offset=chosen.offset)
    return {"filter": chosen, "links": rows, "page": page}


def outbox(conn: Connection) -> dict[str, Any]:
    with reading(conn) as cur:
        return {"mails": health.stuck_mails(cur), "webhooks": health.parked_webhooks(cur)}
