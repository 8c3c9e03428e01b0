"""The status and preview as data and text: grouping per customer and per accountant token, the countdown.
Pure (no database), so the CLI, the DAG's dry run and tests show the same thing."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from l1nda_sync.migration.cutover import CutoverPlan
from l1nda_sync.migration.readiness import LinkReadiness, Readiness

CSV_COLUMNS = ("link_id", "customer_ref", "company_id", "link_state", "readiness", "served_by", "served_kind",
               "rest_connection", "accountant_token", "accountant_label", "invitation")


def countdown(now: datetime, soap_end: datetime) -> str:
    """'89 days 11 hours left' or 'SOAP ended 2 days 3 hours ago'."""
    delta = soap_end - now
    seconds = abs(int(delta.total_seconds()))
    days, hours = seconds // 86400, seconds % 86400 // 3600
    text = f"{days} day{'s' if days != 1 else ''} {hours} hour{'s' if hours != 1 else ''}"
    return f"{text} left" if delta.total_seconds() > 0 else f"SOAP ended {text} ago"


def status_data(rows: Sequence[LinkReadiness], *, now: datetime, soap_end: datetime) -> dict[str, Any]:
    """Everything `migration status --json` prints."""
    customers: dict[str, dict[str, Any]] = {}
    accountants: dict[str, dict[str, Any]] = {}
    for row in rows:
        c = customers.setdefault(row.customer_ref, {"links": 0, **{r.value: 0 for r in Readiness},
                                                    "invitation": row.invitation.value})
        c["links"] += 1
        c[row.readiness.value] += 1
        if row.accountant_token is not None:
            a = accountants.setdefault(str(row.accountant_token), {"label": row.accountant_label, "customers": [],
                                                                   "links": 0, **{r.value: 0 for r in Readiness}})
            a["links"] += 1
            a[row.readiness.value] += 1
            if row.customer_ref not in a["customers"]:
                a["customers"].append(row.customer_ref)
    totals = Counter(row.readiness.value for row in rows)
    return {"now": now, "soap_end": soap_end, "countdown": countdown(now, soap_end),
            "seconds_left": int((soap_end - now).total_seconds()),
            "totals": {r.value: totals.get(r.value, 0) for r in Readiness},
            "customers": dict(sorted(customers.items())), "accountant_tokens": accountants,
            "links": [{"link_id": r.link_id, "customer_ref": r.customer_ref, "company_id": r.company_id,
                       "link_state": r.link_state, "readiness": r.readiness.value, "served_by": r.served_by,
                       "served_kind": r.served_kind, "rest_connection": r.rest_connection,
                       "accountant_token": r.accountant_token, "accountant_label": r.accountant_label,
                       "invitation": r.invitation.value,
                       "ambiguous_rest_companies": list(r.ambiguous_rest_companies)} for r in rows]}


def status_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for link in data["links"]:
        writer.writerow({k: ("" if link[k] is None else link[k]) for k in CSV_COLUMNS})
    return out.getvalue().rstrip("\n")


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned table (the CLI's layout; runtime modules never import the CLI)."""
    shown = [[_cell(v) for v in row] for row in rows]
    if not shown:
        return "(none)"
    widths = [max(len(h), *(len(r[i]) for r in shown)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in shown]
    return "\n".join(lines)


def status_text(data: dict[str, Any]) -> str:
    totals = data["totals"]
    head = (f"SOAP ends {data['soap_end']:%Y-%m-%d %H:%M %Z}: {data['countdown']}. Links: "
            f"{totals['rest_ready']} rest_ready, {totals['soap_only']} soap_only, {totals['ambiguous']} ambiguous.")
    customers = _table(("customer", "links", "rest_ready", "soap_only", "ambiguous", "invitation"),
                       [(ref, c["links"], c["rest_ready"], c["soap_only"], c["ambiguous"], c["invitation"])
                        for ref, c in data["customers"].items()])
    accountants = _table(("accountant token", "label", "customers", "links", "rest_ready", "soap_only", "ambiguous"),
                         [(tid, a["label"], len(a["customers"]), a["links"], a["rest_ready"], a["soap_only"],
                           a["ambiguous"]) for tid, a in data["accountant_tokens"].items()])
    links = _table(("link", "customer", "company", "state", "readiness", "served by", "REST connection",
                    "invitation"),
                   [(link["link_id"], link["customer_ref"], link["company_id"], link["link_state"],
                     link["readiness"], f"{link['served_kind'] or '-'} {link['served_by'] or ''}".strip(),
                     link["rest_connection"], link["invitation"]) for link in data["links"]])
    return (f"{head}\n\nPer customer\n{customers}\n\nPer accountant (master) token\n{accountants}\n\nLinks\n{links}"
            "\n\nambiguous: decide with `l1nda-sync companies unmatched` / `companies match`; soap_only: invite the "
            "customer (`l1nda-sync invite --purpose rest`).")


def preview_text(plan: CutoverPlan) -> str:
    if not plan.active:
        return (f"At {plan.at:%Y-%m-%d %H:%M %Z} SOAP has not ended (soap_end {plan.soap_end:%Y-%m-%d %H:%M %Z}): "
                "the cutover does nothing then.")
    head = (f"At {plan.at:%Y-%m-%d %H:%M %Z} the cutover retires {len(plan.retire)} SOAP token(s)"
            f"{' (' + ', '.join(map(str, plan.retire)) + ')' if plan.retire else ''}, moves {len(plan.to_rest)} "
            f"link(s) to REST connections, suspends {len(plan.suspended)} (soap_ended), and mails "
            f"{len(plan.notices)} notice(s).")
    customers = _table(("customer", "stay on REST", "move to REST", "suspend"),
                       [(ref, v["stay_on_rest"], v["move_to_rest"], v["suspend"])
                        for ref, v in plan.per_customer().items()])
    notices = _table(("token", "label", "level", "customers", "links", "mailed"),
                     [(n.token_id, n.label, n.level, list(n.customers), len(n.link_ids), bool(n.contacts))
                      for n in plan.notices])
    return f"{head}\n\nPer customer (link ids)\n{customers}\n\nNotices (one mail each)\n{notices}"
