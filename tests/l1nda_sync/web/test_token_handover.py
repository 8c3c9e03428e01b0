"""A new SOAP token handed over on the customer page: checked live at the simulator, then `tokens replace`; and the
refusals, each a page that never echoes what was typed."""

from __future__ import annotations

from tests.l1nda_sync.web.conftest import WebStack
from tests.l1nda_sync.web.helpers import (
    browser,
    cli,
    counts,
    csrf_of,
    error_code,
    items,
    register_soap_token,
    rows,
)

DEGRAAF = "salaris@bakkerij-degraaf.example"
CONTACT = "jan@bakkerij-degraaf.example"


def _reset(stack: WebStack) -> tuple[int, str]:
    """De Graaf's token registered, then reset in Nmbrs: (token id, the new token)."""
    token_id = register_soap_token(stack)
    assert cli("links", "request", "--customer", "CUST-DEGRAAF", "--company", "60102")[0] == 0
    return token_id, stack.sim.admin.reset_token(DEGRAAF)


def _hand_over(url: str, username: str, token: str, client=None):
    client = client or browser()
    page = client.get(url)
    assert page.status_code == 200
    assert 'id="token-form"' in page.text
    assert 'id="username"' in page.text
    assert 'id="token"' in page.text
    assert 'id="submit"' in page.text
    return client.post(url + "/token", data={"csrf": csrf_of(page.text), "username": username, "token": token})


def test_a_new_token_is_checked_stored_and_the_page_shows_what_it_reaches(web_stack: WebStack) -> None:
    token_id, new = _reset(web_stack)
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "token", "en", token_id=token_id)
    result = _hand_over(url, DEGRAAF.upper(), new)
    assert result.status_code == 200, result.text[:500]
    assert '<main id="result"' in result.text
    assert items(result.text, "companies") == ["Bakkerij De Graaf B.V. (1)", "De Graaf Winkels B.V. (2)"]
    (link,) = items(result.text, "links")
    assert link.startswith("De Graaf Winkels B.V.: active")
    assert new not in result.text
    (state, hint, replaced), = rows(web_stack, "SELECT state, token_hint, replaced_at IS NOT NULL FROM tokens "
                                               "WHERE id = %s", token_id)
    assert (state, hint, replaced) == ("active", "…" + new[-4:], True)
    assert rows(web_stack, "SELECT state, result_token_id FROM invitations") == [("used", token_id)]
    assert rows(web_stack, "SELECT actor FROM token_events WHERE action = 'replaced'") == [
        ("web:invitation 1",)]
    again = browser().get(url)
    assert (again.status_code, error_code(again)) == (409, "used")


def test_a_token_nmbrs_refuses_is_not_stored_and_never_echoed(web_stack: WebStack) -> None:
    token_id, new = _reset(web_stack)
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "token", "nl", token_id=token_id)
    before = counts(web_stack)
    wrong = "f" * 32
    refused = _hand_over(url, DEGRAAF, wrong)
    assert (refused.status_code, error_code(refused)) == (422, "token_refused")
    assert wrong not in refused.text
    assert "Nmbrs accepteerde dit token niet" in refused.text
    other_login = _hand_over(url, "someone@else.example", new)
    assert (other_login.status_code, error_code(other_login)) == (422, "token_refused")
    assert new not in other_login.text
    empty = _hand_over(url, DEGRAAF, "")
    assert (empty.status_code, error_code(empty)) == (422, "token_refused")
    assert counts(web_stack) == before
    # the link still works for the right token
    assert _hand_over(url, DEGRAAF, new).status_code == 200


def test_the_token_form_of_a_rest_invitation_does_not_exist(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    client = browser()
    page = client.get(url)
    answer = client.post(url + "/token", data={"csrf": csrf_of(page.text), "username": DEGRAAF, "token": "x" * 32})
    assert (answer.status_code, error_code(answer)) == (404, "wrong_purpose")
