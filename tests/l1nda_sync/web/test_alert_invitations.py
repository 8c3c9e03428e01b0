"""A revoked token's customer mail links to a one-time invitation (not "reply with the token"), and the link in
the mail hands over the new token; a rerun of the mail reuses the open invitation."""

from __future__ import annotations

import re

import pytest

from tests.l1nda_sync.web.conftest import WebStack, invitation_url
from tests.l1nda_sync.web.helpers import browser, cli, csrf_of, register_soap_token, rows

DEGRAAF = "salaris@bakkerij-degraaf.example"
CONTACT = "jan@bakkerij-degraaf.example"


def test_a_revoked_tokens_mail_links_to_the_token_page_and_the_link_repairs_it(
        web_stack: WebStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L1NDA_REVOKE_MIN_SPACING", "0")
    monkeypatch.setenv("L1NDA_BREAKER_SHARE", "0.6")  # one of two tokens refused is that token's, not Nmbrs'
    token_id = register_soap_token(web_stack)
    register_soap_token(web_stack, "payroll@modehuis-vandijk.example", "petra@modehuis-vandijk.example", "Van Dijk")
    assert cli("links", "request", "--customer", "CUST-DEGRAAF", "--company", "60101")[0] == 0
    new = web_stack.sim.admin.reset_token(DEGRAAF)
    for _ in range(2):  # one refusal is only suspected; the second confirms it
        code, out = cli("sync", "run", "--force")
        assert code == 0, out
    assert rows(web_stack, "SELECT state FROM tokens WHERE id = %s", token_id) == [("revoked",)]

    customer = [m for m in web_stack.mails(CONTACT) if m["X-L1NDA-Event"] == "escalated"]
    assert len(customer) == 1
    text = customer[0].get_body(("plain",)).get_content()
    assert "reply to this e-mail" not in text
    url = invitation_url(customer[0], web_stack.base_url)
    ops = [m for m in web_stack.mails("support@l1nda.example") if m["X-L1NDA-Event"] == "escalated"]
    assert ops
    assert all(url.rsplit("/", 1)[1] not in m.as_string() for m in ops)
    assert "invitation 1" in ops[0].get_body(("plain",)).get_content()
    (purpose, state, problem), = rows(web_stack, "SELECT purpose, state, problem_id FROM invitations")
    assert (purpose, state) == ("token", "sent")
    assert problem is not None

    client = browser()
    page = client.get(url)
    result = client.post(url + "/token", data={"csrf": csrf_of(page.text), "username": DEGRAAF, "token": new})
    assert result.status_code == 200
    assert '<main id="result"' in result.text
    assert rows(web_stack, "SELECT state FROM tokens WHERE id = %s", token_id) == [("active",)]
    assert rows(web_stack, "SELECT state, token_id FROM links") == [("active", token_id)]
    assert re.search(r"<li[^>]*>Bakkerij De Graaf B\.V\.: active", result.text)
