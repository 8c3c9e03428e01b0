"""Records: frozen plain data; a Probe round-trips through JSON; credentials never show the token."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs import Company, Credentials, Debtor, DebtorTag, Environment, Probe
from l1nda_sync.nmbrs.records import EPOCH

TOKEN = "3f1c0e7a9b2d4c6e8f0a1b2c3d4e5f60"


def sample() -> Probe:
    return Probe(
        environment=Environment("acme.nmbrs.nl", "acme"),
        domain="acme",
        debtors=(Debtor(1, "D1", "One", (DebtorTag(1, "Horeca", "#E4572E"),)), Debtor(2, None, None)),
        companies=(Company(10, 101, "One B.V.", "Month", "60000101", 1), Company(11, 102, None, "Week4", None, None)),
        calls=7,
        mapping_refreshed_at=datetime(2026, 5, 1, 12, 30, tzinfo=UTC),
        mapping_reused=False,
        is_owner=None,
    )


def test_probe_round_trips_through_json() -> None:
    probe = sample()
    data = json.loads(json.dumps(probe.to_dict()))
    assert Probe.from_dict(data) == probe
    assert data["companies"][1] == {"id": 11, "number": 102, "name": None, "period": "Week4", "kvk": None,
                                    "debtor_id": None}
    assert data["debtors"][0]["tags"] == [{"number": 1, "name": "Horeca", "color": "#E4572E"}]


def test_records_are_frozen_with_slots() -> None:
    probe = sample()
    with pytest.raises(dataclasses.FrozenInstanceError):
        probe.calls = 1  # type: ignore[misc]
    for record in (probe, probe.environment, probe.debtors[0], probe.debtors[0].tags[0], probe.companies[0]):
        assert not hasattr(record, "__dict__")


def test_a_minimal_stored_probe_is_read_and_forces_a_refresh() -> None:
    probe = Probe.from_dict({"domain": "demo", "debtors": [{"id": 5, "name": "Five", "tags": []}],
                             "companies": [{"id": 9, "debtor_id": 5, "number": 1009, "name": "Nine"}]})
    assert probe.environment is None
    assert probe.mapping_refreshed_at == EPOCH
    assert probe.debtor_ids == {5}
    assert probe.companies[0] == Company(9, 1009, "Nine", "None", None, 5)
    assert (probe.calls, probe.mapping_reused, probe.is_owner) == (0, False, None)


@pytest.mark.parametrize("data", [[], {"debtors": [{"name": "no id"}]}, {"companies": [{"id": "x"}]},
                                  {"mapping_refreshed_at": "yesterday"}])
def test_an_unreadable_stored_probe_is_a_clear_value_error(data) -> None:
    with pytest.raises(ValueError, match="probe"):
        Probe.from_dict(data)


def test_credentials_wrap_the_token_and_never_show_it() -> None:
    creds = Credentials("api@acme.example", TOKEN, "acme")
    assert isinstance(creds.token, Secret)
    assert creds.token.reveal() == TOKEN
    for shown in (repr(creds), str(creds), f"{creds}", repr(creds.token), f"{creds.token}"):
        assert TOKEN not in shown
    assert "…5f60" in repr(creds)


@pytest.mark.parametrize(("username", "token", "field"), [("", TOKEN, "username"), ("a@b.example", "", "token")])
def test_credentials_refuse_empty_fields(username, token, field) -> None:
    with pytest.raises(ValueError, match=f"Credentials.{field}"):
        Credentials(username, token)
