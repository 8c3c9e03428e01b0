"""`l1nda-sync tokens add|list|show|replace|disable|enable|remove`."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.masking import Secret
from l1nda_sync.registry import db, details, tokens
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import Conflict, InvalidInput
from l1nda_sync.registry.tokens import NewToken, Token
from l1nda_sync.token_check import Checked, ProbeSummary, check_token, record_check, refuse_after_soap_end

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands

SHOW_ROWS = 25
KIND_NAMES = {"soap_token": "soap", "rest_connection": "rest"}  # tokens list: the credential's kind, short
KINDS = {short: kind for kind, short in KIND_NAMES.items()}  # tokens list --kind soap|rest
ARGV_REFUSAL = (
    "a token is never taken from the command line (shell history and process lists keep it); "
    "pipe it in (`... < token.txt`) or type it at the hidden prompt"
)


def id_arg(value: str) -> int:
    try:
        return v.positive_id(value, "ID")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-check", dest="check", action="store_false", default=True,
                        help="do not ask Nmbrs now; the token is stored as 'new' and the next sync run checks it")
    parser.add_argument("--check", dest="check", action="store_true",
                        help="check the token at Nmbrs first (the default; kept for older scripts)")


def _refuse_argv_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", dest="token_on_argv", nargs="?", const="", default=None,
                        help=argparse.SUPPRESS)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("tokens", help="register and manage Nmbrs API tokens",
                                description="Nmbrs API tokens: the token itself is read from stdin or a hidden "
                                            "prompt, never from the command line.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="tokens_command", metavar="ACTION")

    add = sub.add_parser("add", parents=[common], help="register a token (read from stdin or a hidden prompt)",
                         description="Register a token. It is read from stdin when that is a pipe or file, else "
                                     "from a hidden prompt. It is checked at Nmbrs first: a token Nmbrs accepts is "
                                     "active at once, one it refuses is not stored (exit 2); when Nmbrs cannot be "
                                     "asked it is stored as 'new' and the next sync run checks it.")
    add.add_argument("--label", required=True, help="a short name people recognise, unique")
    add.add_argument("--level", required=True, choices=v.LEVELS, help="accountant (master) or debtor level")
    add.add_argument("--username", required=True, metavar="EMAIL", help="the Nmbrs login e-mail of the token")
    add.add_argument("--contact", required=True, action="append", metavar="EMAIL",
                     help="customer contact for alerts (repeat for more)")
    add.add_argument("--language", choices=v.LANGUAGES, default="en", help="language of the contact's mails")
    add.add_argument("--domain", metavar="SUB", help="Nmbrs sub-domain, e.g. 'apitesting' (found by the check)")
    add.add_argument("--notes", help="free text for operators")
    _check_options(add)
    _refuse_argv_token(add)
    add.set_defaults(handler=run_add)

    lst = sub.add_parser("list", parents=[common], help="list tokens")
    lst.add_argument("--state", choices=v.TOKEN_STATES, help="only tokens in this state")
    lst.add_argument("--all", action="store_true", help="include removed tokens")
    lst.add_argument("--kind", choices=tuple(KINDS), help="only SOAP tokens (soap) or REST connections (rest)")
    lst.set_defaults(handler=run_list)

    show = sub.add_parser("show", parents=[common], help="a token with its reach, checks, links and problems")
    show.add_argument("id", metavar="ID", type=id_arg)
    show.set_defaults(handler=run_show)

    replace = sub.add_parser("replace", parents=[common], help="store a new token for the same login (after a reset)",
                             description="Store a new token for the same login, keeping history and links. It "
                                         "is checked at Nmbrs first, as with `tokens add`; with --no-check (or when "
                                         "Nmbrs cannot be asked) it goes back to 'new' and the next run checks it.")
    replace.add_argument("id", metavar="ID", type=id_arg)
    replace.add_argument("--domain", metavar="SUB", help="change the Nmbrs sub-domain too")
    _check_options(replace)
    _refuse_argv_token(replace)
    replace.set_defaults(handler=run_replace)

    for name, handler, text in (
        ("disable", run_disable, "stop checking a token; its links fail over or are suspended"),
        ("enable", run_enable, "check a disabled token again (state 'new')"),
        ("remove", run_remove, "retire a token for good (the secret is erased, the history kept)"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("id", metavar="ID", type=id_arg)
        cmd.add_argument("--reason", help="why, for the audit trail (one line, at most 500 characters)")
        cmd.set_defaults(handler=handler)


# -- add / replace -------------------------------------------------------------------------------------------


def _token_text(t: Token) -> str:
    return f"token {t.id} {t.label!r} ({t.level}, {t.username}, token {t.token_hint})"


def _reach_text(summary: ProbeSummary) -> str:
    shown, more = output.capped(summary.companies, SHOW_ROWS)
    lines = [f"Nmbrs accepted it: environment {summary.domain or '-'}, "
             f"{output.count(len(summary.debtors), 'debtor')}, "
             f"{output.count(len(summary.companies), 'company', 'companies')}"]
    lines.append(output.table(("company", "number", "name", "debtor"),
                              [(c["id"], c.get("number"), c.get("name"), c.get("debtor_id")) for c in shown],
                              empty="it reaches no company (yet): check the login's filter or tags in Nmbrs"))
    return "\n".join(lines + ([more] if more else []))


def _checked_text(checked: Checked | None, token: Token) -> str:
    if checked is None:
        return "not checked (--no-check); the next sync run checks it"
    if not checked.accepted:
        return "Nmbrs could not be asked; the next sync run checks it"
    return f"Nmbrs accepted it; next check {output.cell(token.next_check_at)}"


def _checked_json(checked: Checked | None) -> str:
    return "skipped" if checked is None else ("accepted" if checked.accepted else "nmbrs_unavailable")


def _warn_unchecked(ctx: Context, checked: Checked | None) -> None:
    if checked is not None and not checked.accepted:
        ctx.note(f"warning: {checked.warning}; the token was stored as 'new' and the next sync run checks it")


def run_add(ctx: Context) -> int:
    args = ctx.args
    if args.token_on_argv is not None:
        raise InvalidInput("--token", ARGV_REFUSAL)
    refuse_after_soap_end(ctx.settings)
    store = ctx.token_store()  # no keys: fail before asking for the token
    conn = ctx.connect()
    store.refuse_foreign_keys(conn, action="added")  # keys that are not this registry's: before the token
    new = NewToken.validate(label=args.label, level=args.level, username=args.username, contacts=args.contact,
                            language=args.language, domain=args.domain, notes=args.notes, token=ctx.read_token)
    store.refuse_clashes(conn, new)  # before asking Nmbrs anything
    checked = check_token(ctx.settings, new.username, new.token, new.domain) if args.check else None
    summary = checked.summary if checked else None
    if summary is not None and summary.domain and not new.domain:
        new = dataclasses.replace(new, domain=summary.domain)
    with db.transaction(conn) as cur:
        token = store.add(conn, new, actor=ctx.actor, detail=checked.event_detail() if checked else None)
        if checked is not None and checked.accepted:
            record_check(cur, token.id, checked, ctx.settings)
            token = tokens.fetch_token(cur, token.id)
    _warn_unchecked(ctx, checked)
    others = tokens.tokens_with_login(conn, token.username, exclude_id=token.id)
    if others and not ctx.json:
        ctx.note(f"note: login {token.username} also has token(s) {', '.join(str(o.id) for o in others)}; "
                 f"if this is a new token after a reset, use `l1nda-sync tokens replace {others[0].id}` instead "
                 f"and `l1nda-sync tokens remove {token.id}`")

    def text() -> str:
        lines = [f"added {_token_text(token)}; state {token.state}: {_checked_text(checked, token)}"]
        if summary is not None:
            lines.append(_reach_text(summary))
        return "\n".join(lines)

    ctx.emit({"token": token, "reach": summary, "checked": _checked_json(checked)}, text)
    return 0


def run_replace(ctx: Context) -> int:
    args = ctx.args
    if args.token_on_argv is not None:
        raise InvalidInput("--token", ARGV_REFUSAL)
    domain = v.subdomain(args.domain, "--domain")
    refuse_after_soap_end(ctx.settings)
    store = ctx.token_store()
    conn = ctx.connect()
    current = tokens.get_token(conn, args.id)
    if current.removed_at is not None:
        raise Conflict("ID", f"token {current.id} ({current.label}) was removed and cannot be replaced; register "
                             "the token again with `l1nda-sync tokens add`")
    store.refuse_foreign_keys(conn, action="replaced", except_id=current.id)
    secret: Secret = v.token(ctx.read_token())
    store.refuse_replacement_clash(conn, current, secret)  # before asking Nmbrs anything
    checked = check_token(ctx.settings, current.username, secret, domain or current.domain) if args.check else None
    summary = checked.summary if checked else None
    if summary is not None and summary.domain and not domain:
        domain = summary.domain
    with db.transaction(conn) as cur:
        change = store.replace(conn, args.id, secret, actor=ctx.actor, domain=domain,
                               detail=checked.event_detail() if checked else None)
        if checked is not None and checked.accepted:
            record_check(cur, args.id, checked, ctx.settings)
            change = dataclasses.replace(change, token=tokens.fetch_token(cur, args.id))
    _warn_unchecked(ctx, checked)

    def text() -> str:
        lines = [f"replaced the secret of {_token_text(change.token)} (was {current.token_hint}); "
                 f"state {change.before} -> {change.token.state}: {_checked_text(checked, change.token)}; history and "
                 "links kept"]
        if summary is not None:
            lines.append(_reach_text(summary))
        return "\n".join(lines)

    ctx.emit({"token": change.token, "before": change.before, "reach": summary, "checked": _checked_json(checked)},
             text)
    return 0


# -- list / show ---------------------------------------------------------------------------------------------


def run_list(ctx: Context) -> int:
    conn = ctx.connect()
    kind = KINDS[ctx.args.kind] if ctx.args.kind else None
    found = tokens.list_tokens(conn, state=ctx.args.state, include_removed=ctx.args.all, kind=kind)
    rows = [(t.id, KIND_NAMES.get(t.kind, t.kind), t.label, t.level, t.username, t.token_hint, t.state,
             t.state_since, t.last_valid_at, t.next_check_at if t.state not in ("disabled", "removed") else None,
             t.domain) for t in found]
    ctx.emit(found, lambda: output.table(
        ("id", "kind", "label", "level", "username", "token", "state", "since", "last valid", "next check",
         "domain"), rows,
        empty=("no REST connections" if ctx.args.kind == "rest" else "no tokens") +
              (f" in state {ctx.args.state}" if ctx.args.state else "") +
              ("; start one with `l1nda-sync connections start`" if ctx.args.kind == "rest" else
               "; add one with `l1nda-sync tokens add`")))
    return 0


def run_show(ctx: Context) -> int:
    conn = ctx.connect()
    d = details.token_detail(conn, ctx.args.id)
    ctx.emit(d, lambda: _show_text(d))
    return 0


def _show_text(d: details.TokenDetail) -> str:
    t = d.token
    head = output.fields([
        ("token", f"{t.id} {t.label}"), ("level", t.level), ("login", t.username), ("secret", t.token_hint),
        ("domain", t.domain), ("contacts", f"{', '.join(t.contact_emails)} ({t.contact_language})"),
        ("state", f"{t.state} since {output.cell(t.state_since)}"
                  + (f", missing operation {t.missing_operation}" if t.missing_operation else "")),
        ("last checked", t.last_checked_at), ("last valid", t.last_valid_at),
        ("next check", t.next_check_at if t.state not in ("disabled", "removed") else None),
        ("created", t.created_at), ("replaced", t.replaced_at), ("removed", t.removed_at), ("notes", t.notes),
    ])
    debtors, more_d = output.capped(d.debtors, SHOW_ROWS)
    companies, more_c = output.capped(d.companies, SHOW_ROWS)
    parts = [
        head,
        f"\nReach: {output.count(len(d.debtors), 'debtor')}, {output.count(len(d.companies), 'company', 'companies')}"
        f" (lost earlier: {output.count(d.lost_debtors, 'debtor')}, "
        f"{output.count(d.lost_companies, 'company', 'companies')})",
        output.table(("debtor", "number", "name", "tags", "since"),
                     [(r.debtor_id, r.number, r.name, r.tags, r.first_seen) for r in debtors],
                     empty="no debtors known (not checked yet, or none reached)") + (f"\n{more_d}" if more_d else ""),
        output.table(("company", "number", "name", "debtor", "since"),
                     [(r.company_id, r.number, r.name, r.debtor_id, r.first_seen) for r in companies],
                     empty="no companies known") + (f"\n{more_c}" if more_c else ""),
        "\nRecent checks",
        output.table(("at", "outcome", "fault", "calls", "ms", "debtors", "companies", "detail"),
                     [(c.checked_at, c.outcome, c.fault_code, c.calls, c.duration_ms, c.debtors, c.companies,
                       c.detail) for c in d.checks], empty="not checked yet"),
        "\nLinks served",
        output.table(("link", "customer", "environment", "company", "state", "reason", "since"),
                     [(lk.id, lk.customer_ref, lk.environment, lk.company_id, lk.state, lk.reason, lk.updated_at)
                      for lk in d.links], empty="serves no link"),
        "\nOpen problems",
        output.table(("problem", "kind", "opened", "last seen", "muted"),
                     [(p.id, p.kind, p.opened_at, p.last_seen_at, p.muted) for p in d.problems], empty="none"),
        "\nHistory",
        output.table(("at", "by", "action", "from", "to"),
                     [(e.at, e.actor, e.action, e.from_state, e.to_state) for e in d.events], empty="none"),
    ]
    return "\n".join(parts)


# -- disable / enable / remove -------------------------------------------------------------------------------


def _state_command(ctx: Context, change_fn: Callable[..., tokens.StateChange], verb: str, unchanged: str) -> int:
    reason = v.reason(ctx.args.reason)
    conn = ctx.connect()
    with db.transaction(conn):
        change = change_fn(conn, ctx.args.id, actor=ctx.actor, reason=reason)
    t = change.token
    if change.changed:
        text = f"{verb} {_token_text(t)}: {change.before} -> {t.state}"
    else:
        text = f"{_token_text(t)} {unchanged} (state {t.state}); nothing changed"
    ctx.emit({"token": t, "before": change.before, "changed": change.changed}, text)
    return 0


def run_disable(ctx: Context) -> int:
    return _state_command(ctx, tokens.disable, "disabled", "is already disabled")


def run_enable(ctx: Context) -> int:
    return _state_command(ctx, tokens.enable, "enabled", "is not disabled")


def run_remove(ctx: Context) -> int:
    return _state_command(ctx, tokens.remove, "removed", "is already removed")
