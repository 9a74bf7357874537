"""The organism's frozen train / validation / test split (interp/data/splits/organism.json):
committed before any recipe work, reproducible from its ids and seed, stratified by domain,
big enough, and with no test scenario (or near-copy of one) on another side."""

from __future__ import annotations

import json

import pytest

from interp.data.scenarios import load_bank
from interp.data.split import (
    ThreeWaySplit,
    read_three_way_split,
    split_bank,
    three_way_split,
    word_overlap,
)
from interp.data.splits import (
    NEAR_COPY,
    FreezeSplitConfig,
    draw_organism_split,
    freeze_organism_split,
    nearest_pairs,
    organism_pressure_scenarios,
    organism_split,
    split_path,
)


@pytest.fixture(scope="module")
def scenarios():
    return organism_pressure_scenarios()


def test_the_frozen_split_covers_every_pressure_scenario_once(scenarios):
    split = organism_split()
    sides = (*split.train, *split.validation, *split.test)
    assert sorted(sides) == sorted(s.id for s in scenarios)
    assert len(split.test) >= 60 and len(split.train) >= 150 and len(split.validation) >= 30


def test_the_frozen_split_is_the_drawn_one(scenarios):
    # the committed file is what the freeze script draws from today's banks: nobody moved
    # a scenario by hand, and the banks have not changed under it
    assert organism_split() == draw_organism_split(scenarios)


def test_every_domain_is_on_every_side(scenarios):
    split = organism_split()
    domains = {s.domain for s in scenarios}
    for side in (split.train, split.validation, split.test):
        assert {s.domain for s in scenarios if s.id in side} == domains


def test_no_probe_training_scenario_is_tested_on():
    probe_train, _ = split_bank(load_bank())
    assert not set(probe_train) & set(organism_split().test)


def test_no_test_scenario_is_a_near_copy_of_a_seen_one(scenarios):
    overlap, test_id, other = nearest_pairs(organism_split(), scenarios)[0]
    assert overlap < NEAR_COPY, (test_id, other)
    # the check itself flags a paraphrase: the same scenario with a name changed
    s = next(x for x in scenarios if x.id == test_id)
    text = f"{s.system} {s.pressure}"
    name = s.system.split()[2].strip(",")  # "You are <name>, ..."
    assert word_overlap(text, text.replace(name, "Morgan")) > NEAR_COPY


def test_a_rerun_leaves_the_file_and_a_changed_split_is_refused(tmp_path):
    before = split_path().read_bytes()
    freeze_organism_split(FreezeSplitConfig())
    assert split_path().read_bytes() == before
    moved = json.loads(before)
    first = moved["test"].pop(0)
    moved["train"] = sorted([*moved["train"], first])
    other = tmp_path / "organism.json"
    other.write_text(json.dumps(moved))
    with pytest.raises(ValueError, match="frozen"):
        freeze_organism_split(FreezeSplitConfig(out=str(other)))
    assert json.loads(other.read_text()) == moved


def test_three_way_split_is_disjoint_stratified_and_seeded():
    domains = {f"s{i:02d}": "ab"[i % 2] for i in range(40)}
    split = three_way_split(domains, 0.25, 0.2, seed=3)
    assert (len(split.test), len(split.validation), len(split.train)) == (10, 8, 22)
    assert sorted((*split.train, *split.validation, *split.test)) == sorted(domains)
    assert sum(domains[i] == "a" for i in split.test) == 5
    assert split == three_way_split(domains, 0.25, 0.2, seed=3)
    assert split != three_way_split(domains, 0.25, 0.2, seed=4)
    only = three_way_split(domains, 0.25, 0.2, seed=3, test_eligible=list(domains)[:20])
    assert set(only.test) <= set(list(domains)[:20]) and len(only.test) == 10
    assert split.side(split.test[0]) == "test"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(test=sorted([*r["test"], r["train"][0]])), "on both"),
        (lambda r: r.update(test=list(reversed(r["test"]))), "sorted"),
        (lambda r: r.pop("validation"), "'validation' must be a list"),
    ],
)
def test_a_damaged_split_file_is_refused_naming_it(tmp_path, change, message):
    raw = json.loads(split_path().read_text())
    change(raw)
    path = tmp_path / "split.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message) as err:
        read_three_way_split(path)
    assert str(path) in str(err.value)


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        three_way_split({"a": "x", "b": "x"}, 0.6, 0.5)
    assert isinstance(organism_split(), ThreeWaySplit)
