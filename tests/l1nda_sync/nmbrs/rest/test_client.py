"""RestConversation: a 401 after a successful refresh is not the consent (only invalid_grant is)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import ConsentRevoked, TransientError
from l1nda_sync.nmbrs.rest.answers import TokenRefused
from l1nda_sync.nmbrs.rest.client import RestClient, RestConversation
from l1nda_sync.nmbrs.rest.probe import DEBTORS
from l1nda_sync.nmbrs.rest.records import RestCredentials


class Refusing:
    """A client whose API refuses every access token with 401/40102."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def get(self, endpoint: Any, path: str, params: Mapping[str, Any], token: Secret, **_: Any) -> Any:
        self.tokens.append(token.reveal())
        raise TokenRefused("REST.getDebtors: 40102 (the access token was refused)", code=40102, service="REST",
                           operation="getDebtors")


def _conversation(access: Any) -> tuple[RestConversation, Refusing]:
    client = Refusing()
    return RestConversation(cast(RestClient, client), RestCredentials(7, access)), client


def test_a_401_right_after_a_successful_refresh_is_transient_not_consent_revoked() -> None:
    asked: list[bool] = []

    def access(force: bool) -> Secret:
        asked.append(force)
        return Secret("fresh" if force else "cached")

    talk, client = _conversation(access)
    with pytest.raises(TransientError) as caught:
        talk.get(DEBTORS, "/api/debtors", {})
    assert not isinstance(caught.value, ConsentRevoked)
    assert caught.value.outcome == "transient"
    assert caught.value.code == 40102
    assert asked == [False, True]
    assert client.tokens == ["cached", "fresh"]
    with pytest.raises(TransientError) as later:  # a later page after the refresh: the same judgement
        talk.get(DEBTORS, "/api/debtors", {"pageNumber": 2})
    assert not isinstance(later.value, ConsentRevoked)
    assert asked == [False, True]


def test_a_refresh_refused_with_invalid_grant_is_the_consent() -> None:
    def access(force: bool) -> Secret:
        if force:
            raise ConsentRevoked("REST connection 7: Nmbrs refused the refresh token (invalid_grant)")
        return Secret("cached")

    talk, _ = _conversation(access)
    with pytest.raises(ConsentRevoked):
        talk.get(DEBTORS, "/api/debtors", {})
