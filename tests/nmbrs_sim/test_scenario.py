"""Scenario files: the shipped ones are valid and complete; broken ones give an error naming file, path, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nmbrs_sim.scenario import ScenarioError, load_scenario, world_to_scenario
from nmbrs_sim.world import ACCOUNTANT, ALL, CLIENT
from tests.nmbrs_sim.conftest import DEMO, EXAMPLE

BASE = """
environments:
  - sub_domain: office
    tags: [{name: Horeca, number: 1, color: "#112233"}]
    debtors:
      - id: 1
        name: One
        tags: [Horeca]
        companies:
          - {id: 10, number: 1, name: Ten}
    logins:
      - {username: a@x.example, level: accountant, tag_filter: [Horeca]}
      - {username: c@x.example, level: client, company_filter: [10]}
"""


def _broken(tmp_path: Path, old: str, new: str, *, suffix: str = ".yaml") -> ScenarioError:
    assert old in BASE
    path = tmp_path / f"broken{suffix}"
    path.write_text(BASE.replace(old, new), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}: ")
    return caught.value


def test_the_base_of_the_broken_cases_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert len(load_scenario(path).world.logins) == 2


@pytest.mark.parametrize(("old", "new", "where", "words"), [
    ("id: 1\n", "id: one\n", "environments[0].debtors[0].id", "must be an integer"),
    ("name: One", "nmae: One", "environments[0].debtors[0].nmae", "unknown field"),
    ("{id: 10, number: 1, name: Ten}", "{id: 10, number: 1, name: Ten, period: Monthly}",
     "environments[0].debtors[0].companies[0].period", "Week4"),
    ("{id: 10, number: 1, name: Ten}", "{id: 10, name: Ten}", "environments[0].debtors[0].companies[0].number",
     "is required"),
    ("tag_filter: [Horeca]", "tag_filter: [Horeka]", "environments[0].logins[0].tag_filter", "unknown tag"),
    ("level: client, company_filter: [10]", "level: client, tag_filter: all",
     "environments[0].logins[1].tag_filter", "only accountant logins"),
    ("level: client, company_filter: [10]", "level: client, company_filter: [11]",
     "environments[0].logins[1].company_filter[0]", "no company 11"),
    ("level: accountant, tag_filter: [Horeca]", "level: master", "environments[0].logins[0].level", "accountant"),
    ("username: a@x.example", "username: nobody", "environments[0].logins[0].username", "e-mail"),
    ("username: c@x.example", "username: A@x.example", "environments[0].logins[1].username", "used twice"),
    ("sub_domain: office", "sub_domain: Office.NL", "environments[0].sub_domain", "sub-domain"),
    ('color: "#112233"', 'color: red', "environments[0].tags[0].color", "colour"),
    ("level: accountant, tag_filter: [Horeca]", "level: accountant, template: {DebtorService: [Nope]}",
     "environments[0].logins[0].template", "unknown operation"),
    ("level: accountant, tag_filter: [Horeca]", "level: accountant, template: {EmployeeService: all}",
     "environments[0].logins[0].template", "unknown service"),
    ("level: accountant, tag_filter: [Horeca]", "level: accountant, token: ''",
     "environments[0].logins[0].token", "must not be empty"),
    ("environments:", "faults: [{kind: explode}]\nenvironments:", "faults[0].kind", "not one of"),
    ("environments:", "faults: [{kind: latency}]\nenvironments:", "faults[0].ms", "required"),
    ("environments:", "faults: [{kind: unknown_code, code: 1001}]\nenvironments:", "faults[0].code", "known"),
    ("environments:", "faults: [{kind: null_entry, operation: Debtor_Get}]\nenvironments:", "faults[0].operation",
     "applies to"),
    ("environments:", "faults: [{kind: http_500, probability: 7}]\nenvironments:", "faults[0].probability", "0 to 1"),
    ("environments:", "faults: [{kind: hang, username: z@x.example}]\nenvironments:", "faults[0].username",
     "no login"),
    ("environments:", "latency: {ms: -5}\nenvironments:", "latency.ms", ">= 0"),
    ("environments:", "settings: {accept_missing_domain: maybe}\nenvironments:",
     "settings.accept_missing_domain", "true or false"),
])
def test_errors_name_the_file_the_path_and_the_field(tmp_path: Path, old: str, new: str, where: str,
                                                     words: str) -> None:
    error = _broken(tmp_path, old, new)
    assert error.path == where
    assert words in error.message


def test_duplicate_ids(tmp_path: Path) -> None:
    error = _broken(tmp_path, "          - {id: 10, number: 1, name: Ten}",
                    "          - {id: 10, number: 1, name: Ten}\n          - {id: 10, number: 2}")
    assert error.path == "environments[0].debtors[0].companies[1].id"
    assert "used twice" in error.message


def test_yaml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    error = _broken(tmp_path, "name: One", "name: [One")
    assert error.path.startswith("line ")
    assert "invalid YAML" in error.message


def test_json_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"environments": [}', encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.path == "line 1, column 19"
    assert str(caught.value).startswith(f"{path}: line 1")


def test_missing_file_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="top level must be a mapping"):
        load_scenario(tmp_path / "list.yaml")
    with pytest.raises(ScenarioError, match="environments: is required"):
        load_scenario({})


def test_json_and_yaml_give_the_same_world(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    (tmp_path / "demo.json").write_text(json.dumps(data), encoding="utf-8")
    assert world_to_scenario(load_scenario(tmp_path / "demo.json").world) == world_to_scenario(
        load_scenario(DEMO).world)


def test_snapshot_round_trips() -> None:
    first = world_to_scenario(load_scenario(DEMO).world)
    assert world_to_scenario(load_scenario(first).world) == first


def test_example_scenario_is_valid() -> None:
    scenario = load_scenario(EXAMPLE)
    assert len(scenario.faults) == 3
    assert scenario.faults[2].path == "/api/companies"
    assert list(scenario.rest.clients) == ["PartnerApp_Example_test"]
    assert scenario.world.debtors[101].uuid == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert scenario.world.login("payroll@dehaven.example").password == "dehaven-pw"
    assert scenario.world.login("horeca-desk@example-office.example").template == {
        "DebtorService": {"Environment_Get", "List_GetAll"}}
    assert len(scenario.world.login("boss@example-office.example").token) == 32  # given
    assert scenario.world.companies[9002].ended


def test_demo_scenario_has_what_the_demo_needs() -> None:
    world = load_scenario(DEMO).world
    accountant = [e for e in world.environments.values() if e.product == "accountant"]
    business = [e for e in world.environments.values() if e.product == "business"]
    assert accountant
    assert business
    office = accountant[0]
    assert len(office.debtor_ids) >= 8
    assert len(office.tags) >= 3
    logins = [lg for lg in world.logins.values() if lg.environment == office.sub_domain]
    masters = [lg for lg in logins if lg.level == ACCOUNTANT]
    assert any(lg.tag_filter == ALL for lg in masters)
    assert any(lg.tag_filter != ALL for lg in masters)
    clients = [lg for lg in logins if lg.level == CLIENT and lg.company_filter]
    assert len(clients) >= 2
    debtors_with_companies = [d for d in office.debtor_ids if world.debtors[d].company_ids]
    assert len(debtors_with_companies) >= 8
    assert any(len(world.debtors[d].company_ids) > 1 for d in office.debtor_ids)
    assert any(lg.environment == business[0].sub_domain for lg in world.logins.values())
