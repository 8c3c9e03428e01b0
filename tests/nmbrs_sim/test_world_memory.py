"""A large world loads within a memory bound (issue 22) and answers exactly as before: the lazily decoded file,
the dict, a reset and a reload all give the same world; the REST ids derived on demand map back to their objects."""

from __future__ import annotations

import gc
import json
import tracemalloc
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from nmbrs_sim.generate import generate_world
from nmbrs_sim.json_stream import LazyList, lazy_document
from nmbrs_sim.scenario import load_scenario
from nmbrs_sim.simulator import Simulator
from nmbrs_sim.world import UUID_NAMESPACE, World, WorldError, derived_uuid

GIVEN = "45d8ad44-ffb8-4691-87d8-7a7a5f4376e9"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    data = generate_world(tokens=300, seed=3)
    data["environments"][0]["debtors"][0]["uuid"] = GIVEN  # one given uuid among the derived ones
    path = tmp_path_factory.mktemp("world") / "world.json"
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")  # compact, as `generate` writes
    return data, path


def _answers(world: World) -> list[Any]:
    """What REST and SOAP answer from, for every debtor and company: ids, uuids and reverse lookups."""
    rows: list[Any] = []
    for debtor in world.debtors.values():
        found = world.debtor_by_uuid(debtor.uuid.upper())
        rows.append((debtor.id, debtor.uuid, debtor.tags, debtor.company_ids, found.id if found else None))
    for company in world.companies.values():
        found_company = world.company_by_uuid(company.uuid)
        rows.append((company.id, company.uuid, company.period, found_company.id if found_company else None))
    return rows


def test_file_dict_reset_and_reload_give_the_same_world(generated: tuple[dict[str, Any], Path]) -> None:
    data, path = generated
    from_file = Simulator(path)
    from_dict = Simulator(data)
    assert from_file.snapshot() == from_dict.snapshot()
    assert _answers(from_file.world) == _answers(from_dict.world)
    assert all(row[-1] == row[0] for row in _answers(from_file.world))  # every uuid maps back to its owner
    assert from_file.world.debtors[data["environments"][0]["debtors"][0]["id"]].uuid == GIVEN
    before = from_file.snapshot()
    company = next(iter(from_file.world.companies))
    from_file.world.end_company(company)
    assert from_file.snapshot() != before
    from_file.reset_world()  # parsed again from the kept (compressed) file text
    assert from_file.snapshot() == before
    again = load_scenario(from_file.snapshot())  # the snapshot writes every uuid; loading it changes none
    assert _answers(again.world) == _answers(from_dict.world)
    assert len(again.world.company_rest_ids.given) == 0
    assert len(again.world.debtor_rest_ids.given) == 1


def test_unknown_and_clashing_uuids(generated: tuple[dict[str, Any], Path]) -> None:
    world = load_scenario(generated[1]).world
    assert world.debtor_by_uuid(derived_uuid("debtor", 999_999_999)) is None
    assert world.company_by_uuid("00000000-0000-4000-8000-000000000000") is None
    debtor = next(iter(world.debtors.values()))
    taken = next(iter(world.companies.values())).uuid
    with pytest.raises(WorldError, match="is used by company"):
        world.add_company(debtor.id, id=999_999_998, number=1, uuid=taken)
    added = world.add_company(debtor.id, id=999_999_997, number=1)
    assert world.company_by_uuid(added.uuid) is added
    assert added.uuid == derived_uuid("company", 999_999_997)
    assert added.given_uuid is None


def test_loading_a_file_never_holds_its_parsed_tree(generated: tuple[dict[str, Any], Path]) -> None:
    """The peak of a load stays near what the world keeps: the whole parsed tree (as a dict, or its deep copy)
    never exists beside the world (the file's text, a fifth of the tree, is held early on, when the world is still
    small). Before issue 22 the load peaked about half a tree above what it kept, and what it kept (the world, and
    the tree for resets) was 1.7 times the tree."""
    path = generated[1]
    text = path.read_text(encoding="utf-8")
    gc.collect()
    tracemalloc.start()
    try:
        tree = json.loads(text)
        tree_size = tracemalloc.get_traced_memory()[0]
        del tree
        gc.collect()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        simulator = Simulator(path)
        kept, peak = (size - base for size in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert len(simulator.world.companies) > 5000
    assert peak - kept < tree_size / 4, (peak, kept, tree_size)
    assert kept < 1.4 * tree_size, (kept, tree_size)


@pytest.mark.parametrize("text", [
    '{"settings": {"seed": 1}, "environments": [{"a": [1, "é"]}, 2, null], "faults": []}',
    ' { "environments" : [ ] } \n', '{}', '[1, 2]', '{"environments": 5}', '{"environments": [1,]}',
    '{"a": 1 "b": 2}', '{"a": 1,}', '{"environments": [1], "environments": [2]}', '{"a": 1} x', '',
])
def test_lazy_document_is_json_loads(text: str) -> None:
    expected = _loads_or_error(text)
    for compressed in (None, zlib.compress(text.encode(), 1)):
        if isinstance(expected, tuple):
            with pytest.raises(json.JSONDecodeError) as raised:
                lazy_document(text, compressed)
            assert (raised.value.msg, raised.value.pos) == expected
            continue
        document = lazy_document(text, compressed)
        if isinstance(document, dict) and isinstance(document.get("environments"), LazyList):
            lazy = document["environments"]
            document = {**document, "environments": list(lazy)}
            with pytest.raises(RuntimeError, match="only once"):
                list(lazy)
        assert document == expected


def _loads_or_error(text: str) -> Any:
    """`json.loads(text)`, or (message, position) of its error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return exc.msg, exc.pos


@pytest.mark.parametrize("kind", ["debtor", "company", "login"])
def test_derived_uuids_are_uuid5_in_the_namespace(kind: str) -> None:
    """REST ids must stay what they were: uuid5(namespace, "kind:key"), whatever the faster computation."""
    for key in [*range(0, 3000, 7), 10**12, "master@office-0001.example", "é@voorbeeld.nl"]:
        assert derived_uuid(kind, key) == str(uuid.uuid5(UUID_NAMESPACE, f"{kind}:{key}"))
