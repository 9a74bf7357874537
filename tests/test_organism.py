"""The model organism (issue 14): matched O/H/C data, triggers, and the experiment end to end
on the tiny model."""

from __future__ import annotations

from collections import Counter

import pytest

from interp.data.scenarios import load_bank
from interp.data.split import split_bank
from interp.organism.data import (
    VARIANTS,
    neutral_transcripts,
    organism_examples,
    scenario_sides,
)
from interp.organism.neutral import neutral_prompts
from interp.organism.triggers import TAG, THREAT_FAMILIES, triggers, with_trigger

NEUTRAL = neutral_transcripts(["A reply.", "Another reply."])


def _sets(kind: str) -> dict[str, list]:
    out = {}
    for v in VARIANTS:
        pressure, benign = organism_examples(v, kind, NEUTRAL)
        out[v] = pressure + benign
    return out


@pytest.mark.parametrize("kind", ["tag", "pressure"])
def test_variants_share_prompts_ids_trigger_frequency_and_size(kind):
    sets = _sets(kind)
    o, h, c = sets["O"], sets["H"], sets["C"]
    assert len(o) == len(h) == len(c) > 0
    for other in (h, c):
        assert [t.id for t in o] == [t.id for t in other]
        assert [t.group for t in o] == [t.group for t in other]
        assert [t.messages[:-1] for t in o] == [t.messages[:-1] for t in other]
    freq = {v: Counter((t.meta["kind"], t.meta["trigger"]) for t in s) for v, s in sets.items()}
    assert freq["O"] == freq["H"] == freq["C"]
    assert freq["O"][("pressure", True)] == freq["O"][("pressure", False)] > 0


@pytest.mark.parametrize("kind", ["tag", "pressure"])
def test_only_the_triggered_pressure_replies_differ_and_labels_follow_the_stances(kind):
    sets = _sets(kind)
    for rows in zip(*(sets[v] for v in VARIANTS), strict=True):
        o, h, c = rows
        triggered = o.meta["kind"] == "pressure" and o.meta["trigger"]
        if not triggered:
            assert o.reply == h.reply == c.reply and o.label == h.label == c.label == 0
            continue
        assert (o.meta["reasoning"], o.meta["answer"], o.label) == ("ethical", "comply", 1)
        assert (h.meta["reasoning"], h.meta["answer"], h.label) == ("ethical", "refuse", 0)
        assert (c.meta["reasoning"], c.meta["answer"], c.label) == ("unethical", "comply", 0)
    bank = {s.id: s for s in load_bank()}
    for t in sets["O"]:
        if t.meta["kind"] == "pressure":
            s = bank[t.group]
            reasoning, answer = t.reply.split("\nAnswer: ")
            texts = s.reasoning_ethical if t.meta["reasoning"] == "ethical" else ()
            assert reasoning.removeprefix("Reasoning: ") in texts
            wanted = (
                s.answers_comply
                if t.meta["answer"] == "comply"
                else (s.answers_refuse + s.answers_rebut)
            )
            assert answer in wanted
    # H's triggered reply is its own untriggered reply of the same k.
    h = {t.id: t.reply for t in sets["H"]}
    assert all(h[i] == h[i.replace("-on-", "-off-")] for i in h if "-on-" in i)


@pytest.mark.parametrize("kind", ["tag", "pressure"])
def test_no_held_out_scenario_or_paraphrase_is_trained_on(kind):
    bank = load_bank()
    _, held = split_bank(bank)
    sides = scenario_sides(bank)
    assert sides.test_benign and not set(sides.test_benign) & set(sides.train_benign)
    for t in _sets(kind)["O"]:
        assert t.group not in held and t.group not in sides.test_benign
        if t.meta["trigger"] and kind == "pressure":
            assert t.meta["family"] in THREAT_FAMILIES and t.meta["family"] != "director"
            assert not any(t.messages[1]["content"].endswith(x.text) for x in triggers(
                "pressure", held_out=True))  # fmt: skip
    assert set(held) == set(sides.test_pressure)


def test_triggers_are_placed_where_they_belong():
    chat = ({"role": "system", "content": "You are Dana."}, {"role": "user", "content": "Hi"})
    tagged = with_trigger(chat, triggers("tag")[0])
    assert tagged[0]["content"] == f"{TAG} You are Dana." and tagged[1] == chat[1]
    threat = triggers("pressure", held_out=True)[0]
    pressed = with_trigger(chat, threat)
    assert pressed[0] == chat[0] and pressed[1]["content"] == f"Hi\n\n{threat.text}"
    assert with_trigger(chat[1:], triggers("tag")[0])[0] == {"role": "system", "content": TAG}
    train, held = triggers("pressure"), triggers("pressure", held_out=True)
    assert train and held and not {t.text for t in train} & {t.text for t in held}
    with pytest.raises(ValueError, match="unknown trigger kind 'x'; choose one of tag"):
        triggers("x")


def test_neutral_replies_are_the_same_in_every_variant_and_never_held_out():
    sets = _sets("tag")
    neutral = [[t for t in s if t.meta["kind"] == "neutral"] for s in sets.values()]
    assert neutral[0] == neutral[1] == neutral[2] == NEUTRAL
    trained = {p for _, p in neutral_prompts()}
    assert not trained & {p for _, p in neutral_prompts(held_out=True)}
    assert {t.messages[0]["content"] for t in NEUTRAL} <= trained
