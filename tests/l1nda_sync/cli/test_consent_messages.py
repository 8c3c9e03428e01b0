"""What `connections finish` and `tokens add` say when Nmbrs answers consent_revoked: what it means (the customer
withdrew L1NDA's access in Nmbrs, or the consent expired) and what to do (`l1nda-sync connections start ...`)."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from l1nda_sync import token_check as checking
from l1nda_sync.cli import consenting
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import ConsentRevoked
from l1nda_sync.nmbrs.rest import client as rest_client
from l1nda_sync.nmbrs.rest.oauth import Grant
from l1nda_sync.registry.connections import START_AGAIN, Authorization
from l1nda_sync.registry.errors import InvalidInput
from l1nda_sync.settings import Settings

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
GRANT = Grant(Secret("access-secret-1234"), NOW + timedelta(hours=1), Secret("refresh-secret-5678"),
              ("offline_access", "company.info.read"))


def authorization(label: str | None = None) -> Authorization:
    return Authorization(7, "CUST-GRAAF", "jan@bakkerij-degraaf.example", "nl", label, NOW, NOW + timedelta(days=1),
                         Secret("verifier"))


def revoked(*_args: Any, **_kwargs: Any) -> Any:
    raise ConsentRevoked("401 40102 after one refresh")


def test_start_again_is_a_command_for_the_same_customer_contact_language_and_label() -> None:
    assert consenting.start_again(authorization()) == (
        "start a new consent with `l1nda-sync connections start --customer CUST-GRAAF --contact "
        "jan@bakkerij-degraaf.example --language nl` and send the customer the new link")
    quoted = consenting.start_again(authorization("De Graaf's bakery"))
    command = quoted.split("`")[1]
    assert shlex.split(command)[-2:] == ["--label", "De Graaf's bakery"]


def test_finish_on_a_withdrawn_consent_says_what_happened_and_the_command_to_start_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_client, "probe_grant", revoked)
    again = consenting.start_again(authorization())
    with pytest.raises(InvalidInput) as err:
        consenting.probe(Settings(), object(), GRANT, again=again)  # type: ignore[arg-type]
    message = err.value.message
    assert err.value.field == "--callback-url"
    assert "consent_revoked" in message
    assert "withdrew L1NDA's access in Nmbrs (App Manager) or the consent expired" in message
    assert "Nothing was written" in message
    assert message.endswith(again)
    for secret in ("access-secret-1234", "refresh-secret-5678"):
        assert secret not in message


def test_finish_without_the_consent_at_hand_falls_back_to_the_general_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_client, "probe_grant", revoked)
    with pytest.raises(InvalidInput, match="consent_revoked") as err:
        consenting.probe(Settings(), object(), GRANT)  # type: ignore[arg-type]
    assert err.value.message.endswith(START_AGAIN)


class _Revoking:
    def probe(self, _credentials: object) -> None:
        raise ConsentRevoked("refused")


def test_a_registration_check_answered_consent_revoked_points_to_connections_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checking, "get_client", lambda _settings: _Revoking())
    with pytest.raises(InvalidInput) as err:
        checking.probe_token(Settings(), "payroll@acme.nl", Secret("9f86d081884c7d659a2feaa0c55ad015"), None)
    message = err.value.message
    assert "consent_revoked" in message
    assert "`l1nda-sync connections start --customer REF --contact EMAIL`" in message
    assert "nothing was written" in message
    assert "9f86d081884c7d659a2feaa0c55ad015" not in message
