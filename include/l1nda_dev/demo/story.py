"""`make demo`: run the sync DAG, change the Nmbrs world, run again, and tell what changed.

The DAG runs with `dag.test()` in this process: the real DAG file, its tasks and Airflow's metadata database,
without a scheduler. After the first import it takes about two seconds a run; `airflow dags test` as a
subprocess pays Airflow's import (8-9 s here) on every run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import yaml

from l1nda_dev.demo.console import Console, TaskFollower
from l1nda_dev.demo.stack import DEMO_SCENARIO, LINKS, SHORTENED, TOKENS, DemoError, DemoStack

DAG_ID = "nmbrs_token_sync"
NEW_COMPANY = (2002, 50202, 202, "Café De Zwaan Terras B.V.")  # debtor, company id, number, name
TAG_DEBTOR, TAG = 2004, "Horeca"  # Fietsenwinkel Snel loses the tag the Horeca office's token filters on
RESET_LOGIN = "Modehuis Van Dijk"  # its token is reset in Nmbrs

REASONS = {
    "revoked": "the token was revoked",
    "tag_or_filter": "the token no longer reaches it (debtor tag or filter changed)",
    "filter_or_company_ended": "outside the token's filter, or the company ended",
    "rights_missing": "the token lacks an API right",
    "no_subscription": "the Nmbrs subscription ended",
    "failover": "taken over by another token",
}


@dataclass
class Snapshot:
    """Tokens (by id) and links (by company id) as the CLI lists them at one moment."""

    tokens: dict[int, dict[str, Any]]
    links: dict[int, dict[str, Any]]  # by company id


def company_names() -> dict[int, str]:
    scenario = yaml.safe_load(DEMO_SCENARIO.read_text())
    names = {c["id"]: c["name"] for env in scenario["environments"] for d in env["debtors"] for c in d["companies"]}
    names[NEW_COMPANY[1]] = NEW_COMPANY[3]
    return names


def load_dag(stack: DemoStack) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(stack.dags_folder))
    if bag.import_errors:
        raise DemoError(f"the DAG files do not import: {bag.import_errors}")
    return bag.get_dag(DAG_ID)


def run_dag(stack: DemoStack, title: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One `dag.test()` run with its tasks shown as they start; returns the registry's run summary.

    The DAG is parsed afresh for every run, as a worker would: `dag.test(run_conf=...)` on a DAG object
    leaves that conf in its params, so a later run on the same object would still see it (force=true, say).
    """
    console = stack.console
    dag = load_dag(stack)
    shown = f" with {dict(conf)}" if conf else ""
    console.say(f"{title}: {DAG_ID}{shown}")
    mails_before = len(stack.sink.stored)
    started = time.monotonic()
    with TaskFollower(stack.paths.log, lambda task: console.say(f"    task {task}")):
        run = dag.test(run_conf=dict(conf or {}))
    failed = sorted(ti.task_id for ti in run.get_task_instances() if ti.state not in ("success", "skipped"))
    if run.state != "success":
        raise DemoError(f"the run {run.run_id} ended {run.state} (tasks not successful: {failed}); "
                        f"see {stack.paths.log}")
    summary = _last_summary(stack)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted((summary.get("outcomes") or {}).items())) or "none"
    console.say(
        f"    done in {time.monotonic() - started:.1f} s: {summary.get('checked', 0)} token(s) checked ({outcomes}); "
        f"links activated {summary.get('links_activated', 0)}, suspended {summary.get('links_suspended', 0)}; "
        f"mails sent {len(stack.sink.stored) - mails_before}")
    return summary


def _last_summary(stack: DemoStack) -> dict[str, Any]:
    rows = _query(stack, "SELECT summary FROM runs ORDER BY id DESC LIMIT 1")
    return dict(rows[0][0]) if rows else {}


def _query(stack: DemoStack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    from l1nda_sync.registry.db import fetch_all

    return fetch_all(stack.env["L1NDA_DATABASE_URL"], sql, *args)


def snapshot(stack: DemoStack) -> Snapshot:
    with ThreadPoolExecutor(max_workers=2) as pool:
        tokens, links = pool.map(lambda what: stack.cli_json(what, "list"), ("tokens", "links"))
    return Snapshot({t["id"]: t for t in _rows(tokens)}, {lk["company_id"]: lk for lk in _rows(links)})


def _rows(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, list):
        return document
    for key in ("tokens", "links", "problems", "items"):
        if isinstance(document, dict) and isinstance(document.get(key), list):
            rows: list[dict[str, Any]] = document[key]
            return rows
    raise DemoError(f"unexpected JSON from l1nda-sync: {str(document)[:200]}")


def change_world(stack: DemoStack) -> None:
    say = stack.console.say
    admin = stack.sim.admin
    reset = next(t for t in TOKENS if t.label == RESET_LOGIN)
    # The new token is not printed: the customer hands it over on the customer page at the end of the story.
    stack.reset_tokens[reset.username] = admin.reset_token(reset.username)
    say(f"Nmbrs: {reset.username} resets its API token (the registered one now gets fault 1001)")
    admin.set_debtor_tags(TAG_DEBTOR, remove=[TAG])
    say(f"Nmbrs: debtor {TAG_DEBTOR} (Fietsenwinkel Snel) loses the tag {TAG}; the Horeca office's token filters on it")
    debtor, company, number, name = NEW_COMPANY
    admin.add_company(debtor, id=company, number=number, name=name)
    say(f"Nmbrs: company {company} ({name}) is added to debtor {debtor} (Café De Zwaan, tag Horeca)")


def wait_until_due(stack: DemoStack, token_id: int) -> None:
    """Wait for the token's next check (seconds here; ten minutes with the production settings)."""
    rows = _query(stack, "SELECT GREATEST(0, EXTRACT(EPOCH FROM next_check_at - now())) FROM tokens WHERE id = %s",
                  token_id)
    wait = float(rows[0][0]) + 0.2 if rows else 0.0
    stack.console.say(f"waiting {wait:.1f} s until the failed token is due again "
                      f"(L1NDA_CHECK_INTERVAL_FAILED={SHORTENED['L1NDA_CHECK_INTERVAL_FAILED']} s here, 600 s by "
                      f"default; a revocation needs a second 1001 at least "
                      f"L1NDA_REVOKE_MIN_SPACING={SHORTENED['L1NDA_REVOKE_MIN_SPACING']} s later, 600 s by default)")
    time.sleep(wait)


def _token_cell(token: Mapping[str, Any] | None) -> str:
    if not token:
        return "-"
    state = str(token.get("state"))
    return f"{state} ({token['missing_operation']})" if token.get("missing_operation") else state


def _link_cell(link: Mapping[str, Any] | None, labels: Mapping[int, str]) -> str:
    if not link:
        return "-"
    state = str(link.get("state"))
    if state == "active":
        return f"active via {labels.get(link.get('token_id') or 0, link.get('token_id'))}"
    if link.get("reason"):
        reason = str(link["reason"])
        return f"{state}: {REASONS.get(reason, reason)}"
    return state


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def tell(stack: DemoStack, before: Snapshot, after: Snapshot, problems: list[dict[str, Any]]) -> str:
    """The before-and-after story as text."""
    labels = {tid: str(t.get("label")) for tid, t in after.tokens.items()}
    names = company_names()
    out = ["", "=== What happened ===", "",
           "Tokens (registered with `l1nda-sync tokens add`):"]
    out.append(_table(("id", "label", "level", "after run 1", "at the end"), [
        (str(tid), labels[tid], str(t.get("level")), _token_cell(before.tokens.get(tid)), _token_cell(t))
        for tid, t in sorted(after.tokens.items())]))
    out += ["", "Links (requested with `l1nda-sync links request`):"]
    out.append(_table(("company", "name", "customer", "after run 1", "at the end"), [
        (str(cid), names.get(cid, "?"), str(lk.get("customer_ref")), _link_cell(before.links.get(cid), labels),
         _link_cell(lk, labels)) for cid, lk in sorted(after.links.items())]))
    changed = [(cid, lk) for cid, lk in sorted(after.links.items())
               if (before.links.get(cid) or {}).get("state") != lk.get("state")]
    activated = [str(cid) for cid, lk in changed if lk.get("state") == "active"]
    suspended = [f"{cid} ({REASONS.get(str(lk.get('reason')), lk.get('reason'))})" for cid, lk in changed
                 if lk.get("state") == "suspended"]
    out += ["", f"Since run 1: activated {', '.join(activated) or 'none'}; suspended {', '.join(suspended) or 'none'}."]
    out += ["", "Open problems (`l1nda-sync problems list`):"]
    out += [f"  {p.get('kind')} - {p.get('token_label') or '(provider)'}" for p in problems] or ["  none"]
    mails = stack.sink.stored
    out += ["", f"Mails sent ({len(mails)}), each stored as an .eml file:"]
    out += mail_lines(mails)
    out += ["", "Shortened for the demo: " + ", ".join(f"{k}={v} s" for k, v in SHORTENED.items())
            + " (600 s each by default); runs 2 and 3 are triggered at once instead of every 10 minutes "
            "(run 2 with force=true, because healthy tokens are due only hourly)."]
    return "\n".join(out)


def mail_lines(mails: list[Any]) -> list[str]:
    """Subject, recipients and file of each mail, and the invitation link it carries (masked: the whole link is
    the customer's, in the mail)."""
    from l1nda_dev.demo.customer_page import invitation_link
    from l1nda_sync.masking import mask

    out = []
    for mail in mails:
        out += [f"  {mail.subject}", f"      to {', '.join(mail.recipients)}", f"      {_shown_path(mail.path)}"]
        link = invitation_link(mail)
        if link is not None:
            base, value = link.rsplit("/", 1)
            out.append(f"      invitation link {base}/{mask(value)} (one-time, for the customer: in the mail)")
    return out


def _shown_path(path: Any) -> str:
    """Relative to the working directory when under it (var/mail/...), else absolute."""
    from pathlib import Path

    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def expectations(stack: DemoStack, after: Snapshot) -> list[str]:
    """What the story must show; an empty list when it did."""
    reset_id = stack.token_ids[RESET_LOGIN]
    misses = []
    if after.tokens[reset_id]["state"] != "revoked":
        misses.append(f"token {reset_id} is {after.tokens[reset_id]['state']}, not revoked")
    expect_links = {50301: "suspended", 50401: "suspended", NEW_COMPANY[1]: "active", 50101: "active",
                    50701: "pending"}
    for company, state in expect_links.items():
        got = after.links.get(company, {}).get("state")
        if got != state:
            misses.append(f"link {company} is {got}, expected {state}")
    if not stack.sink.stored:
        misses.append("no mail was sent")
    return misses


def run(stack: DemoStack) -> int:
    console: Console = stack.console
    stack.register()
    stack.create_pool()
    console.say("")
    run_dag(stack, "run 1, as scheduled (every new token is due at once)")
    before = snapshot(stack)
    active = sum(1 for lk in before.links.values() if lk["state"] == "active")
    console.say(f"after run 1: tokens {_count(t['state'] for t in before.tokens.values())}; "
                f"{active} of {len(LINKS)} links active")
    console.say("")
    change_world(stack)
    console.say("")
    run_dag(stack, "run 2, forced (healthy tokens are due only hourly)", {"force": True})
    wait_until_due(stack, stack.token_ids[RESET_LOGIN])
    run_dag(stack, "run 3, as scheduled (only the token that failed is due)")
    after = snapshot(stack)
    problems = _rows(stack.cli_json("problems", "list"))
    console.raw(tell(stack, before, after, problems))
    misses = expectations(stack, after)
    if misses:
        raise DemoError("the story did not go as expected: " + "; ".join(misses))
    from l1nda_dev.demo import rest_story

    chapter = rest_story.run_chapter(stack, run_dag, wait_until_due, links=after.links,
                                     labels={tid: str(t.get("label")) for tid, t in after.tokens.items()})
    console.raw(rest_story.tell(chapter))
    misses = rest_story.expectations(chapter)
    from l1nda_dev.demo import invitation_story

    console.raw(invitation_story.run_chapter(stack, after))
    from l1nda_dev.demo import migration_story

    console.raw(migration_story.run_chapter(stack, run_dag))
    for number, summary in _query(stack, "SELECT id, summary FROM runs ORDER BY id"):
        print(f"registry run {number}: {summary}", flush=True)  # into the log
    if misses:
        raise DemoError("the story did not go as expected: " + "; ".join(misses))
    return 0


def _count(states: Any) -> str:
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
