"""The scenario's REST additions: clients, passwords, UUIDs; `nmbrs-sim validate` names file, path and field;
snapshots keep them; the OpenAPI subset is sound."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from nmbrs_sim import openapi
from nmbrs_sim.cli import main
from nmbrs_sim.scenario import ScenarioError, load_scenario, read_scenario_file
from nmbrs_sim.world import derived_uuid
from tests.nmbrs_sim.conftest import DEMO

BASE = """
environments:
  - sub_domain: office
    debtors:
      - id: 1
        uuid: 11111111-2222-4333-8444-555555555555
        companies:
          - {id: 10, number: 1, name: Ten}
    logins:
      - {username: c@x.example, level: client, company_filter: [10], password: secret-pw}
rest:
  settings: {access_token_seconds: 600}
  clients:
    - client_id: PartnerApp_Test
      client_secret: "s3cr*t$value"
      redirect_uris: [http://127.0.0.1:9000/cb]
      subscription_keys: [abc]
      scopes: [offline_access, company.info.read]
"""


def _broken(tmp_path: Path, old: str, new: str) -> str:
    assert old in BASE
    path = tmp_path / "broken.yaml"
    path.write_text(BASE.replace(old, new), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}: ")
    return str(caught.value)


def test_the_base_is_valid_and_keeps_its_uuids(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(BASE, encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.world.debtors[1].uuid == "11111111-2222-4333-8444-555555555555"
    assert scenario.world.companies[10].uuid == derived_uuid("company", 10)
    assert scenario.rest.settings.access_token_seconds == 600
    assert scenario.rest.clients["PartnerApp_Test"].scopes == ["offline_access", "company.info.read"]


@pytest.mark.parametrize(("old", "new", "where", "words"), [
    ("scopes: [offline_access, company.info.read]", "scopes: [offline_access, company.everything]",
     "rest.clients[0].scopes[1]", "unknown scope"),
    ("redirect_uris: [http://127.0.0.1:9000/cb]", "redirect_uris: [/cb]", "rest.clients[0].redirect_uris[0]",
     "absolute"),
    ("redirect_uris: [http://127.0.0.1:9000/cb]", "redirect_uris: [" + ", ".join(f"http://h/{i}" for i in range(6))
     + "]", "rest.clients[0].redirect_uris", "1 to 5"),
    ('client_secret: "s3cr*t$value"', "client_secret: short", "rest.clients[0].client_secret", "8 characters"),
    ("subscription_keys: [abc]", "subscription_keys: []", "rest.clients[0].subscription_keys", "primary"),
    ("client_id: PartnerApp_Test", "client_id: Partner App", "rest.clients[0].client_id", "not a client id"),
    ("client_id: PartnerApp_Test", "clientid: PartnerApp_Test", "rest.clients[0].clientid", "unknown field"),
    ("{access_token_seconds: 600}", "{access_token_seconds: 0}", "rest.settings.access_token_seconds", ">= 1"),
    ("{access_token_seconds: 600}", "{token_error_status: 500}", "rest.settings.token_error_status", "<= 499"),
    ("uuid: 11111111-2222-4333-8444-555555555555", "uuid: not-a-uuid", "environments[0].debtors[0].uuid",
     "not a UUID"),
    ("password: secret-pw", "password: abc", "environments[0].logins[0].password", "at least 4"),
])
def test_errors_name_the_file_the_path_and_the_field(tmp_path: Path, old: str, new: str, where: str,
                                                     words: str) -> None:
    message = _broken(tmp_path, old, new)
    assert f": {where}: " in message
    assert words in message


def test_a_client_id_used_twice(tmp_path: Path) -> None:
    data = yaml.safe_load(BASE)
    data["rest"]["clients"].append(dict(data["rest"]["clients"][0]))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(data, source="twice.json")
    assert "twice.json: rest.clients[1].client_id: 'PartnerApp_Test' is used twice" in str(caught.value)


def test_validate_command_names_file_path_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("company.info.read]", "company.info.reed]"), encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    assert f"{path}: rest.clients[0].scopes[1]: unknown scope 'company.info.reed'" in capsys.readouterr().err
    assert main(["validate", str(DEMO)]) == 0


def test_snapshot_round_trips_with_rest(sim) -> None:
    snapshot = sim.admin.world()
    assert {c["client_id"] for c in snapshot["rest"]["clients"]} == {"PartnerApp_L1NDA_demo",
                                                                    "PartnerApp_Narrow_test"}
    again = load_scenario(snapshot)
    assert again.rest.clients["PartnerApp_L1NDA_demo"].client_secret == "Lx*7$demo-Secret$q9*"
    assert again.world.debtors[3001].uuid == "45d8ad44-ffb8-4691-87d8-7a7a5f4376e9"
    assert again.world.logins["salaris@bakkerij-degraaf.example"].password == "degraaf-demo-pw"


def test_admin_lists_clients_with_secrets_keys_and_scopes(sim) -> None:
    clients = {c["client_id"]: c for c in sim.admin.rest_clients()}
    demo = clients["PartnerApp_L1NDA_demo"]
    assert demo["client_secret"] == "Lx*7$demo-Secret$q9*"
    assert demo["subscription_keys"][0] == "30d05593229f49c18856be06ebc47b24"
    assert "offline_access" in demo["scopes"]
    assert len(demo["redirect_uris"]) == 3


def test_admin_clock(sim) -> None:
    moved = sim.admin.set_clock("2027-03-01T00:00:00Z")
    assert moved["now"].startswith("2027-03-01T00:00:0")
    later = sim.admin.advance_clock(3600)
    assert later["now"].startswith("2027-03-01T01:00:0")
    assert abs(sim.admin.reset_clock()["offset_seconds"]) < 1


def test_demo_logins_that_may_consent() -> None:
    demo = read_scenario_file(DEMO)
    logins = {login["username"]: login for env in demo["environments"] for login in env["logins"]}
    consenting = {name for name, login in logins.items() if login.get("password")}
    assert {"payroll@modehuis-vandijk.example", "hr@thuiszorg-delinde.example",
            "salaris@bakkerij-degraaf.example"} <= consenting
    assert all(logins[name]["level"] == "client" for name in consenting - {"master-all@demo-accountants.example"})


def test_the_openapi_subset_is_a_sound_document() -> None:
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1")
    operations = {item["get"]["operationId"] for item in doc["paths"].values()}
    assert operations == {"getDebtors", "getCompanies", "getCompaniesByDebtor", "getUserInfo", "getCurrentPeriod"}
    for name in doc["components"]["schemas"]:
        jsonschema.Draft202012Validator.check_schema(openapi.schema(name))


@pytest.mark.skipif(not os.environ.get("NMBRS_OPENAPI_YAML"),
                    reason="set NMBRS_OPENAPI_YAML to Nmbrs' document (pip download nmbrs-rest-api==0.0.3)")
def test_the_subset_agrees_with_nmbrs_document() -> None:
    """Every property of the subset's schemas exists in Nmbrs' document with the same type and format."""
    full = yaml.safe_load(Path(os.environ["NMBRS_OPENAPI_YAML"]).read_text(encoding="utf-8"))
    ours = openapi.document()
    for path, item in ours["paths"].items():
        theirs = full["paths"][path]["get"]
        assert theirs["operationId"] == item["get"]["operationId"]
        assert set(theirs["security"][0]["Bearer"]) == set(item["get"]["security"][0]["Bearer"])
    for name in ("Debtor", "Company", "UserInfo", "Pagination", "CompanyPeriod", "Period"):
        mine, real = ours["components"]["schemas"][name], full["components"]["schemas"][name]
        assert set(mine["properties"]) == set(real["properties"]), name
        for prop, spec in mine["properties"].items():
            real_prop = real["properties"][prop]
            if "type" in spec and "type" in real_prop:
                assert spec["type"] == real_prop["type"], (name, prop)
            assert spec.get("format") == real_prop.get("format") or "anyOf" in spec, (name, prop)
    assert ours["components"]["schemas"]["CompanyPeriodType"]["enum"] == \
        full["components"]["schemas"]["CompanyPeriodType"]["enum"]
