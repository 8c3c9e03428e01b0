"""The demo's last chapter: the customer whose token was revoked answers the alert mail on the customer page.

The revoked mail to Modehuis Van Dijk links a one-time invitation. The customer opens it, types the Nmbrs login
e-mail and the new token Nmbrs made on the reset, and sends the form; the page checks the token with Nmbrs, stores
it (`tokens replace` semantics) and brings the customer's links in line at once: the token is active again and its
suspended link is back, without a sync run and without anyone mailing a token. Opening the link again shows it
worked once. The customer's browser is an HTTP client here (the browser tests drive the same pages in Chromium).
"""

from __future__ import annotations

from typing import Any

from l1nda_dev.demo.customer_page import hand_over_token, invitation_link
from l1nda_dev.demo.stack import TOKENS, DemoError, DemoStack
from l1nda_sync.masking import mask

LABEL = "Modehuis Van Dijk"
COMPANY = 50301  # Modehuis Van Dijk B.V.: suspended when its token was revoked


def run_chapter(stack: DemoStack, before: Any) -> str:
    """Follow the revoked mail's link, hand over the new token, and tell what changed; DemoError if it did not."""
    from l1nda_dev.demo.story import _link_cell, _rows, _token_cell

    login = next(t for t in TOKENS if t.label == LABEL)
    token_id = stack.token_ids[LABEL]
    mails = [m for m in stack.sink.stored if login.contact in m.recipients and invitation_link(m)]
    if not mails:
        raise DemoError(f"no mail to {login.contact} carries an invitation link")
    mail = mails[0]
    link = invitation_link(mail)
    assert link is not None
    new_token = stack.reset_tokens[login.username]
    result, again = hand_over_token(link, login.username, new_token)
    token = next(t for t in _rows(stack.cli_json("tokens", "list")) if t["id"] == token_id)
    links = {lk["company_id"]: lk for lk in _rows(stack.cli_json("links", "list"))}
    labels = {stack.token_ids[t.label]: t.label for t in TOKENS}
    base, value = link.rsplit("/", 1)
    out = ["", "=== The customer answers the mail (the customer page) ===", "",
           f"{login.contact} opens the link in \"{mail.subject}\" ({base}/{mask(value)}), types the login",
           f"{login.username} and the new token Nmbrs made on the reset ({mask(new_token)}), and sends the form.",
           f"  the page: {result.main} (HTTP {result.status}); the token reaches "
           f"{', '.join(result.items.get('companies') or ['nothing'])}",
           f"  the customer's links on it: {'; '.join(result.items.get('links') or ['none'])}",
           f"  token {token_id} {LABEL}: {_token_cell(before.tokens.get(token_id))} -> {_token_cell(token)}",
           f"  link {COMPANY}: {_link_cell(before.links.get(COMPANY), labels)} -> "
           f"{_link_cell(links.get(COMPANY), labels)} (no sync run needed)",
           f"  the same link again: {again.main} '{again.code}' (HTTP {again.status}): it works once"]
    misses = []
    if result.main != "result":
        misses.append(f"the token hand-over ended on {result.main} '{result.code}', not the result page")
    if token.get("state") != "active":
        misses.append(f"token {token_id} is {token.get('state')} after the hand-over, not active")
    if (links.get(COMPANY) or {}).get("state") != "active":
        misses.append(f"link {COMPANY} is {(links.get(COMPANY) or {}).get('state')} after the hand-over")
    if again.code != "used":
        misses.append(f"the link opened again showed {again.main} '{again.code}', not 'used'")
    if new_token in "\n".join(out) or value in "\n".join(out):
        misses.append("a secret reached the screen")
    if misses:
        raise DemoError("the customer page chapter did not go as expected: " + "; ".join(misses))
    return "\n".join(out)
