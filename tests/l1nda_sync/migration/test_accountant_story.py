"""An accountant serving 20 debtors through one SOAP master token, over the real customer page: the campaign invites
each debtor's contact (20 invitation mails), explains to the accountant why each must consent (one summary) and
counts down for operations (one weekly); a debtor consents through the link in its own campaign mail (httpx against
the page and the simulator's consent page), its invitation becomes `used`, its link moves to REST and
`migration status` shows it; a rerun mails nobody. The world is built with the simulator's admin API (the demo's
scenario is not edited): 20 debtors with a company each in the accountant environment, a new master login, and one
client login per debtor that can consent.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest

from tests.l1nda_sync.web.conftest import PASSWORDS, WebStack, invitation_url
from tests.l1nda_sync.web.helpers import cli, consent, rows

ENVIRONMENT = "demo-accountants"
MASTER = "master@boekhouder-twintig.example"
ACCOUNTANT_CONTACT = "kantoor@boekhouder-twintig.example"
OPS = "support@l1nda.example"
DEBTORS = range(1, 21)


def customer(i: int) -> str:
    return f"CUST-D{i:02d}"


def contact(i: int) -> str:
    return f"salaris@debiteur{i:02d}.example"


def company(i: int) -> int:
    return 91000 + i


def build(stack: WebStack, monkeypatch: pytest.MonkeyPatch) -> int:
    """20 debtors, the master token registered and checked, their links requested and active, contacts recorded."""
    admin = stack.sim.admin
    for i in DEBTORS:
        admin.add_debtor(ENVIRONMENT, id=9100 + i, number=f"T{i:02d}", name=f"Debiteur {i:02d} B.V.")
        admin.add_company(9100 + i, id=company(i), number=100 + i, name=f"Debiteur {i:02d} B.V.")
        password = f"debiteur{i:02d}-pw"
        admin.add_login(ENVIRONMENT, username=f"client@debiteur{i:02d}.example", level="client", debtor=9100 + i,
                        company_filter=[company(i)], password=password)
        monkeypatch.setitem(PASSWORDS, f"client@debiteur{i:02d}.example", password)
    login = admin.add_login(ENVIRONMENT, username=MASTER, level="accountant")  # also sees the demo's debtors
    code, out = cli("tokens", "add", "--label", "Boekhouder Twintig", "--level", "accountant", "--username", MASTER,
                    "--contact", ACCOUNTANT_CONTACT, "--domain", ENVIRONMENT, "--json", stdin=str(login["token"]))
    assert code == 0, out
    token_id = int(json.loads(out)["token"]["id"])
    for i in DEBTORS:
        assert cli("links", "request", "--customer", customer(i), "--company", str(company(i)))[0] == 0
        assert cli("migration", "contact", "--customer", customer(i), "--contact", contact(i))[0] == 0
    code, out = cli("sync", "run", "--force")
    assert code == 0, out
    assert rows(stack, "SELECT state, count(*) FROM links GROUP BY state") == [("active", 20)]
    return token_id


def status(at: str) -> dict:
    code, out = cli("migration", "status", "--json", "--at", at)
    assert code == 0, out
    return json.loads(out)


def tally(stack: WebStack) -> Counter[str]:
    return Counter(str(m["To"]) for m in stack.mails())


def test_an_accountant_with_20_debtors_and_a_debtor_consenting_through_its_campaign_mail(
        web_stack: WebStack, monkeypatch: pytest.MonkeyPatch) -> None:
    token_id = build(web_stack, monkeypatch)
    before = tally(web_stack)
    assert sum(before.values()) == 0, before  # nothing to tell yet
    now = web_stack.clock()
    at = now.isoformat()
    first = status(at)
    assert first["totals"] == {"soap_only": 20, "rest_ready": 0, "ambiguous": 0}
    accountant = first["accountant_tokens"][str(token_id)]
    assert (accountant["label"], accountant["links"], accountant["soap_only"]) == ("Boekhouder Twintig", 20, 20)
    assert accountant["customers"] == [customer(i) for i in DEBTORS]

    # the campaign starts: every debtor's contact gets its own invitation, the accountant one summary, ops the weekly
    monkeypatch.setenv("L1NDA_MIGRATION_CAMPAIGN_START", (now - timedelta(hours=1)).isoformat())
    code, out = cli("sync", "run")
    assert code == 0, out
    mails = tally(web_stack)
    assert mails == {**{contact(i): 1 for i in DEBTORS}, ACCOUNTANT_CONTACT: 1, OPS: 1}
    summary = web_stack.mails(ACCOUNTANT_CONTACT)[0].get_body(("plain",)).get_content()
    assert all(customer(i) in summary or f"Debiteur {i:02d}" in summary for i in DEBTORS)
    assert "/invite/" not in summary  # an invitation is one debtor's, never in the accountant's mail
    invited = status(web_stack.clock().isoformat())
    assert {invited["customers"][customer(i)]["invitation"] for i in DEBTORS} == {"sent"}

    # debtor 7 consents through the link in its own campaign mail
    url = invitation_url(web_stack.mails(contact(7))[0], web_stack.base_url)
    page = consent(web_stack, url, "client@debiteur07.example")
    assert page.status_code == 200, page.text[:300]
    assert rows(web_stack, "SELECT customer_ref, state FROM invitations WHERE state = 'used'") == [
        (customer(7), "used")]
    code, out = cli("sync", "run")  # the next run moves the link to the REST connection
    assert code == 0, out
    mails[OPS] += 1  # operations hear of the consent, once; no debtor, no accountant is mailed
    assert tally(web_stack) == mails
    told = web_stack.mails(OPS)[-1]
    assert "CUST-D07 consented" in str(told["Subject"])
    assert "/invite/" not in told.as_string()
    code, out = cli("sync", "run")  # a rerun: nothing more
    assert code == 0, out
    assert tally(web_stack) == mails
    after = status(web_stack.clock().isoformat())
    assert after["totals"] == {"soap_only": 19, "rest_ready": 1, "ambiguous": 0}
    assert after["customers"][customer(7)]["invitation"] == "consented"
    assert after["accountant_tokens"][str(token_id)]["soap_only"] == 19
    assert {after["customers"][customer(i)]["invitation"] for i in DEBTORS if i != 7} == {"sent"}
    (kind,), = rows(web_stack, "SELECT t.kind FROM links l JOIN tokens t ON t.id = l.token_id "
                                "WHERE l.company_id = %s", company(7))
    assert kind == "rest_connection"
    assert rows(web_stack, "SELECT count(*) FROM problems WHERE kind = 'migration_invite' AND state = 'open'") == [
        (19,)]
