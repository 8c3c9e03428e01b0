"""The demo's cutover chapter: `migration status` before, the end of SOAP simulated, the cutover, the status after.

Nmbrs ends its SOAP API on soap_end (2027-03-01). The demo cannot wait for it, so it simulates the day: it moves the
setting soap_end to the start of the current minute (`L1NDA_SOAP_END`, in the demo's environment, as an operator
would set it), which is what the clock passing soap_end looks like to L1NDA. It shows `migration status` as it
stands, `migration preview` at that time, runs the DAG (the plan step performs the cutover) with the simulator's
call log cleared, and shows the status again: SOAP tokens retired, links not reached by a REST connection suspended
(soap_ended), the notices mailed, and no SOAP call made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from l1nda_dev.demo.stack import DemoError, DemoStack
from l1nda_sync.settings import SOAP_END_ZONE

RunDag = Callable[[DemoStack, str, Mapping[str, Any] | None], dict[str, Any]]


def _status(stack: DemoStack, at: str) -> tuple[str, dict[str, Any]]:
    text = stack.run(["l1nda-sync", "migration", "status", "--at", at], what="l1nda-sync migration status")
    data = stack.cli_json("migration", "status", "--at", at)
    return text.rstrip("\n"), data


def soap_calls(stack: DemoStack) -> int:
    """SOAP calls in the simulator's call log (everything but REST and the identity server)."""
    return sum(int(r["count"]) for r in stack.sim.admin.calls() if r["service"] not in ("REST", "Identity"))


def run_chapter(stack: DemoStack, run_dag: RunDag) -> str:
    """Simulate soap_end, run the cutover, and tell it; DemoError if it did not go as the preview said."""
    say = stack.console.say
    mails_before = len(stack.sink.stored)
    now = datetime.now(UTC)
    before_text, before = _status(stack, now.isoformat(timespec="seconds"))
    out = ["", "=== The end of SOAP (a simulated cutover) ===", "",
           f"$ l1nda-sync migration status   (before; soap_end is still {before['soap_end']})", before_text]
    soap_end = now.replace(second=0, microsecond=0).astimezone(SOAP_END_ZONE)
    stack.env["L1NDA_SOAP_END"] = os.environ["L1NDA_SOAP_END"] = soap_end.isoformat()
    at = (soap_end + timedelta(seconds=30)).isoformat(timespec="seconds")
    preview = stack.cli_json("migration", "preview", "--at", at)
    preview_text = stack.run(["l1nda-sync", "migration", "preview", "--at", at], what="l1nda-sync migration preview")
    out += ["", f"L1NDA_SOAP_END={soap_end.isoformat()}  (the demo moves soap_end to now: the day has come)",
            f"$ l1nda-sync migration preview --at {at}", preview_text.rstrip("\n")]
    console_out = "\n".join(out)
    stack.console.raw(console_out)
    stack.sim.admin.clear_calls()
    summary = run_dag(stack, "run after soap_end (the plan step performs the cutover)", None)
    calls = soap_calls(stack)
    from l1nda_dev.demo.story import _rows, mail_lines

    after_text, after = _status(stack, datetime.now(UTC).isoformat(timespec="seconds"))
    retired = sorted(int(t["id"]) for t in _rows(stack.cli_json("tokens", "list")) if t.get("state") == "retired")
    soap_ended = [lk for lk in _rows(stack.cli_json("links", "list"))
                  if lk.get("state") == "suspended" and lk.get("reason") == "soap_ended"]
    suspended_by_plan = sorted(c["link_id"] for c in preview["changes"] if c["reason"] == "soap_ended")
    tail = ["", f"after the cutover: {len(retired)} SOAP token(s) retired ({', '.join(map(str, retired)) or '-'}); "
                f"SOAP calls in the simulator's log since soap_end: {calls}; run summary cutover: "
                f"{summary.get('cutover', {})}; links now {after['totals']}",
            "$ l1nda-sync migration status   (after)", after_text,
            "", "Mails since (the cutover's notices, and what the run before it queued)",
            *mail_lines(stack.sink.stored[mails_before:])]
    misses = []
    if calls:
        misses.append(f"{calls} SOAP call(s) after soap_end")
    if sorted(preview["retire"]) != retired:
        misses.append(f"the preview retires {sorted(preview['retire'])}, the cutover retired {retired}")
    if not suspended_by_plan:
        misses.append("the preview suspends no link for soap_ended (the demo's fleet has SOAP-only links)")
    if sorted(int(lk["id"]) for lk in soap_ended) != suspended_by_plan:
        misses.append(f"the preview suspends links {suspended_by_plan}, after the cutover "
                      f"{sorted(int(lk['id']) for lk in soap_ended)} are suspended for soap_ended")
    if misses:
        raise DemoError("the cutover chapter did not go as expected: " + "; ".join(misses))
    say("")
    return "\n".join(tail)
