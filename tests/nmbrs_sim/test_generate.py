"""`generate_world`: the default mix, determinism, and a world the simulator loads."""

from __future__ import annotations

import pytest

from nmbrs_sim.generate import generate_world, summarize
from nmbrs_sim.scenario import load_scenario


@pytest.fixture(scope="module")
def default_world() -> dict:
    return generate_world(seed=3)


def test_default_mix(default_world: dict) -> None:
    counts = summarize(default_world)
    assert counts["logins"] == 2000
    assert counts["accountant_logins"] == 200
    assert counts["client_logins"] == 1800
    assert 35_000 <= counts["companies"] <= 45_000
    for env in default_world["environments"]:
        assert 20 <= len(env["debtors"]) <= 200
        by_debtor = {d["id"]: {c["id"] for c in d["companies"]} for d in env["debtors"]}
        for login in env["logins"]:
            if login["level"] == "client":
                assert 1 <= len(login["company_filter"]) <= 3
                assert set(login["company_filter"]) <= by_debtor[login["debtor"]]


def test_deterministic_for_a_seed(default_world: dict) -> None:
    assert generate_world(seed=3) == default_world
    assert generate_world(seed=4) != default_world


def test_the_simulator_loads_it(default_world: dict) -> None:
    world = load_scenario(default_world).world
    assert len(world.logins) == 2000
    tokens = [login.token for login in world.logins.values()]
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) == 32 for t in tokens)


def test_small_and_business_only_worlds() -> None:
    small = generate_world(tokens=10, accountant_share=0.5, seed=1, min_debtors=2, max_debtors=4)
    assert summarize(small)["accountant_logins"] == 5
    business = generate_world(tokens=4, accountant_share=0.0, seed=1)
    assert summarize(business)["environments"] == 4
    assert all(env["product"] == "business" for env in business["environments"])
    load_scenario(small)
    load_scenario(business)


@pytest.mark.parametrize(("kwargs", "words"), [({"tokens": 0}, "tokens"), ({"accountant_share": 2}, "share"),
                                               ({"min_debtors": 5, "max_debtors": 2}, "min_debtors")])
def test_bad_arguments(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        generate_world(**kwargs)
