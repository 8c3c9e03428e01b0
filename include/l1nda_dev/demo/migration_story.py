"""The demo's last chapter: the migration campaign and the end of SOAP, on a simulated clock.

Nmbrs ends its SOAP API on soap_end (2027-03-01 00:00 Amsterdam); the demo cannot wait for it, so it moves the clock.
`time_machine.travel` shifts this process's wall clock: Airflow's `dag.test()`, L1NDA's engine and the in-process
simulator (its tokens and consents) all read it, while monotonic timers keep their pace. The CLI commands the chapter
shows run in their own processes and get the same time through `--at`. soap_end keeps its real value: only the clock
moves, as it will.

1. Today the campaign starts (`migration_campaign_start` set to now): a run invites each customer with SOAP-only links,
   gives each accountant token a summary and operations the weekly mail.
2. The clock moves in steps toward soap_end, with a run at each (a refresh token expires after 30 days unused, so the
   steps stay shorter than that, as hourly runs would): expired invitations are re-sent, reminders go out weekly and
   daily in the last two weeks.
3. Five minutes past soap_end: `migration status`, `migration preview`, the run that performs the cutover with the
   simulator's call log cleared, and the status after: SOAP tokens retired, the links no REST connection reaches
   suspended (soap_ended), the notices mailed, no SOAP call made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine

from l1nda_dev.demo.stack import DemoError, DemoStack
from l1nda_sync.settings import SOAP_END_ZONE, Settings

RunDag = Callable[[DemoStack, str, Mapping[str, Any] | None], dict[str, Any]]

# Days before soap_end at which the clock stops for a run: gaps under the refresh tokens' 30 idle days, one stop in the
# final window (14 days) where reminders turn daily. Stops that are not after today are skipped.
STOPS_BEFORE_END = (66, 44, 22, 8)
AFTER_END = timedelta(minutes=5)
CAMPAIGN_KINDS = ("migration_invite", "migration_accountant", "migration_weekly")


def _status(stack: DemoStack, at: str) -> tuple[str, dict[str, Any]]:
    text = stack.run(["l1nda-sync", "migration", "status", "--at", at], what="l1nda-sync migration status")
    data = stack.cli_json("migration", "status", "--at", at)
    return text.rstrip("\n"), data


def soap_calls(stack: DemoStack) -> int:
    """SOAP calls in the simulator's call log (everything but REST and the identity server)."""
    return sum(int(r["count"]) for r in stack.sim.admin.calls() if r["service"] not in ("REST", "Identity"))


def _last_outbox_id(stack: DemoStack) -> int:
    from l1nda_dev.demo.story import _query

    return int(_query(stack, "SELECT coalesce(max(id), 0) FROM outbox")[0][0])


def campaign_mails(stack: DemoStack, after_id: int) -> dict[str, int]:
    """Campaign mails queued after outbox row `after_id`, by kind and event ('migration_invite opened': 3)."""
    from l1nda_dev.demo.story import _query

    rows = _query(stack, """SELECT p.kind, o.event, count(*) FROM outbox o JOIN problems p ON p.id = o.problem_id
                            WHERE o.id > %s AND p.kind = ANY(%s) GROUP BY 1, 2 ORDER BY 1, 2""",
                  after_id, list(CAMPAIGN_KINDS))
    return {f"{kind} {event}": int(n) for kind, event, n in rows}


def _shown(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items()) or "none"


def _stops(now: datetime, soap_end: datetime) -> list[datetime]:
    return [at for at in (soap_end - timedelta(days=d) for d in STOPS_BEFORE_END) if at > now + timedelta(hours=1)]


def _campaign(stack: DemoStack, run_dag: RunDag, now: datetime, soap_end: datetime) -> list[str]:
    """Start the campaign today, then walk the clock to the last stop before soap_end, telling each step as it goes;
    returns what did not go as expected."""
    from l1nda_dev.demo.story import mail_lines

    show = stack.console.raw
    start = now.replace(second=0, microsecond=0)
    stack.env["L1NDA_MIGRATION_CAMPAIGN_START"] = os.environ["L1NDA_MIGRATION_CAMPAIGN_START"] = start.isoformat()
    show(f"\nL1NDA_MIGRATION_CAMPAIGN_START={start.isoformat()}  (the campaign starts today)")
    misses = []
    first, mails_before = _last_outbox_id(stack), len(stack.sink.stored)
    run_dag(stack, "campaign, today: the first invitations", None)
    started = campaign_mails(stack, first)
    show("\n".join([f"today ({(soap_end - now).days} days before soap_end): campaign mails {_shown(started)}",
                    *mail_lines(stack.sink.stored[mails_before:]), ""]))
    if not started.get("migration_invite opened"):
        misses.append("the campaign's first run mailed no invitation (the demo's fleet has SOAP-only links)")
    later: dict[str, int] = {}
    for at in _stops(now, soap_end):
        mark, sent_before = _last_outbox_id(stack), len(stack.sink.stored)
        with time_machine.travel(at, tick=True):
            run_dag(stack, f"the clock at {at.astimezone(SOAP_END_ZONE):%Y-%m-%d %H:%M %Z}", None)
        mails = campaign_mails(stack, mark)
        for what, n in mails.items():
            later[what] = later.get(what, 0) + n
        window = " (final window: daily reminders)" if soap_end - at <= timedelta(days=14) else ""
        show(f"{at.astimezone(SOAP_END_ZONE):%Y-%m-%d} ({(soap_end - at).days} days before soap_end){window}: "
             f"campaign mails {_shown(mails)}; {len(stack.sink.stored) - sent_before} mail(s) sent in all "
             "(reminders of open problems too; in var/mail, not listed here)\n")
    if _stops(now, soap_end) and not later.get("migration_invite reminder"):
        misses.append("no campaign reminder went out while the clock moved toward soap_end")
    return misses


def run_chapter(stack: DemoStack, run_dag: RunDag) -> str:
    """Run the campaign and the cutover on a simulated clock, and tell it; DemoError if the cutover did not do what
    the preview said, a SOAP call was made after soap_end, or the campaign mailed nobody."""
    from l1nda_dev.demo.story import _rows, mail_lines

    say = stack.console.say
    now = datetime.now(UTC)
    soap_end = Settings.load({**os.environ, **stack.env}, use_airflow=False).soap_end
    if now >= soap_end - timedelta(days=1):
        raise DemoError(f"the demo's migration chapter needs today before soap_end ({soap_end.isoformat()})")
    before_text, before = _status(stack, now.isoformat(timespec="seconds"))
    stack.console.raw("\n".join(["", "=== The migration campaign and the end of SOAP (a simulated clock) ===", "",
                                 f"$ l1nda-sync migration status   (today; soap_end {before['soap_end']})",
                                 before_text]))
    misses = _campaign(stack, run_dag, now, soap_end)
    at = soap_end + AFTER_END
    at_text = at.isoformat(timespec="seconds")
    with time_machine.travel(at, tick=True):
        preview = stack.cli_json("migration", "preview", "--at", at_text)
        preview_text = stack.run(["l1nda-sync", "migration", "preview", "--at", at_text],
                                 what="l1nda-sync migration preview")
        stack.console.raw("\n".join([f"the clock moves to {at.astimezone(SOAP_END_ZONE).isoformat()}, "
                                     "five minutes past soap_end",
                                     f"$ l1nda-sync migration preview --at {at_text}", preview_text.rstrip("\n")]))
        stack.sim.admin.clear_calls()
        mails_before = len(stack.sink.stored)
        summary = run_dag(stack, "run after soap_end (the plan step performs the cutover)", None)
        calls = soap_calls(stack)
        after_text, after = _status(stack, datetime.now(UTC).isoformat(timespec="seconds"))
    retired = sorted(int(t["id"]) for t in _rows(stack.cli_json("tokens", "list")) if t.get("state") == "retired")
    soap_ended = [lk for lk in _rows(stack.cli_json("links", "list"))
                  if lk.get("state") == "suspended" and lk.get("reason") == "soap_ended"]
    suspended_by_plan = sorted(c["link_id"] for c in preview["changes"] if c["reason"] == "soap_ended")
    tail = ["", f"after the cutover: {len(retired)} SOAP token(s) retired ({', '.join(map(str, retired)) or '-'}); "
                f"SOAP calls in the simulator's log since soap_end: {calls}; run summary cutover: "
                f"{summary.get('cutover', {})}; links now {after['totals']}",
            "$ l1nda-sync migration status   (after)", after_text,
            "", "Mails of the run after soap_end (the cutover's notices, and what else was due)",
            *mail_lines(stack.sink.stored[mails_before:])]
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
        raise DemoError("the migration chapter did not go as expected: " + "; ".join(misses))
    say("")
    return "\n".join(tail)
