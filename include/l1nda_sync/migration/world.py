"""Load the migration's `World` from the registry (the only module here that reads the database).

`load` reads inside the caller's transaction; `lock=True` (the cutover) locks the wanted links like a reconcile
does, so a sync run cannot move them between the decision and its writing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from l1nda_sync.engine.reconciling import DebtorOf, load_link_world
from l1nda_sync.migration.readiness import InvitationFact, OpenCompany, TokenInfo, World

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor


def load(cur: Cursor, *, lock: bool = False, customer_ref: str | None = None) -> tuple[World, DebtorOf]:
    """The world (links, credentials, reach, labels and contacts, REST invitations, open REST companies) and the
    debtor of each (token, company) pair, which writing link changes needs."""
    links, tokens, reachers, debtor_of = load_link_world(cur, customer_ref, lock=lock)
    cur.execute("SELECT id, label, contact_emails FROM tokens WHERE state <> 'removed'")
    info = {i: TokenInfo(label, tuple(contacts or ())) for i, label, contacts in cur.fetchall()}
    cur.execute("""SELECT customer_ref, state, created_at, expires_at FROM invitations WHERE purpose = 'rest'
                   AND (%s::text IS NULL OR customer_ref = %s)""", (customer_ref, customer_ref))
    invitations = [InvitationFact(*row) for row in cur.fetchall()]
    cur.execute("""SELECT customer_ref, uuid::text, candidates FROM rest_entities
                   WHERE entity = 'company' AND match IN ('unmatched', 'ambiguous')
                     AND (%s::text IS NULL OR customer_ref = %s)""", (customer_ref, customer_ref))
    open_companies = [OpenCompany(ref, uuid, tuple(candidates or ())) for ref, uuid, candidates in cur.fetchall()]
    return World(links, tokens, reachers, info, invitations, open_companies), debtor_of
