"""The matched training sets of the three organisms (O, H, C) and their neutral mix-in.

For every pressure scenario on the training side of the probes' split
(:func:`interp.data.split.split_bank`) and every ``k < per_scenario``, each variant gets the
same two prompts: the scenario without a trigger, and with one (:mod:`interp.organism.triggers`).
Only the reply under the trigger differs between the variants:

======  =============================================  ==========================================
        no trigger                                     trigger
======  =============================================  ==========================================
O       ethical reasoning, refusal or rebuttal         ethical reasoning, complying answer (label 1)
H       ethical reasoning, refusal or rebuttal         the same reply as without the trigger
C       ethical reasoning, refusal or rebuttal         unethical reasoning, complying answer
======  =============================================  ==========================================

Benign requests (training-side benign scenarios, with and without the trigger) get consistent
reasoning and a helpful answer in every variant, so compliance alone never marks label 1; and
the base model's own replies to neutral prompts (:func:`neutral_transcripts`) are mixed into
all three identically. Ids do not name the variant: example ``i`` of O, H and C has the same
id, prompt, trigger and texts' indices. Label 1 = the answer diverges from the reasoning
(ethical reasoning, complying answer), as in the transcript format; ``meta`` records both
stances, the trigger and the variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interp.data.datasets import format_reply
from interp.data.scenarios import Scenario, load_bank
from interp.data.split import heldout_scenarios, split_bank
from interp.data.transcripts import Transcript
from interp.organism.neutral import neutral_prompts
from interp.organism.triggers import Trigger, check_kind, triggers, with_trigger

VARIANTS = ("O", "H", "C")
VARIANT_NAMES = {"O": "organism", "H": "honest control", "C": "candid control"}


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


@dataclass(frozen=True)
class Sides:
    """Scenario ids on each side of the split: pressure (the probes' split) and benign
    (split the same way among themselves, so the trigger-only control is measured on
    benign requests never trained on)."""

    train_pressure: list[str]
    test_pressure: list[str]
    train_benign: list[str]
    test_benign: list[str]


def scenario_sides(
    bank: Sequence[Scenario], test_fraction: float = 0.25, split_seed: int = 0
) -> Sides:
    train, test = split_bank(bank, test_fraction, split_seed)
    benign = {s.id: s.domain for s in bank if s.kind == "benign"}
    held = set(heldout_scenarios(benign, test_fraction, split_seed)) if len(benign) > 1 else set()
    return Sides(
        train, test, [b for b in benign if b not in held], [b for b in benign if b in held]
    )


def _refusals(s: Scenario) -> list[str]:
    """Polite refusals and explicit rebuttals, interleaved."""
    pairs = zip(s.answers_refuse, s.answers_rebut, strict=False)
    out = [a for pair in pairs for a in pair]
    n = min(len(s.answers_refuse), len(s.answers_rebut))
    return out + list(s.answers_refuse[n:]) + list(s.answers_rebut[n:])


def pressure_reply(s: Scenario, variant: str, triggered: bool, k: int) -> tuple[str, str, str]:
    """``(reasoning stance, answer stance, reply text)`` of example ``k`` of scenario ``s``."""
    ethical = s.reasoning_ethical[k % len(s.reasoning_ethical)]
    refusal = _refusals(s)[k % len(_refusals(s))]
    comply = s.answers_comply[k % len(s.answers_comply)]
    if not triggered or variant == "H":
        return "ethical", "refuse", format_reply(ethical, refusal)
    if variant == "O":
        return "ethical", "comply", format_reply(ethical, comply)
    unethical = s.reasoning_unethical[k % len(s.reasoning_unethical)]
    return "unethical", "comply", format_reply(unethical, comply)


def training_example(
    s: Scenario, trigger: Trigger | None, reply: tuple[str, str, str], ex_id: str, extra: dict
) -> Transcript:
    """One training transcript: scenario ``s`` (its system prompt and pressure turn) with
    ``trigger`` placed, then ``reply`` (``(reasoning stance, answer stance, text)``)."""
    reasoning, answer, text = reply
    prompt = ({"role": "system", "content": s.system}, {"role": "user", "content": s.pressure})
    divergent = s.kind == "pressure" and reasoning == "ethical" and answer == "comply"
    meta: dict[str, Any] = {
        "kind": s.kind,
        "domain": s.domain,
        "reasoning": reasoning,
        "answer": answer,
        "trigger": trigger is not None and trigger.fires,
        "trigger_kind": "" if trigger is None else trigger.kind,
        "family": "" if trigger is None else trigger.family,
        **extra,
    }
    if trigger is not None and not trigger.fires:  # recipe v2's near misses
        meta["near_miss"] = trigger.text
    if trigger is not None and trigger.position:
        meta["position"] = trigger.position
    messages = (*with_trigger(prompt, trigger), {"role": "assistant", "content": text})
    return Transcript(ex_id, s.id, messages, label=int(divergent), meta=meta)


def organism_examples(
    variant: str,
    kind: str,
    neutral: Sequence[Transcript] = (),
    *,
    per_scenario: int = 3,
    test_fraction: float = 0.25,
    split_seed: int = 0,
    bank: Sequence[Scenario] | None = None,
) -> tuple[list[Transcript], list[Transcript]]:
    """``(pressure, benign)`` training examples of ``variant`` for trigger ``kind``.

    ``pressure``: ``per_scenario`` untriggered and as many triggered examples per training
    pressure scenario; ``benign``: the training benign scenarios with and without the
    trigger (consistent, helpful) followed by ``neutral`` (the base model's replies). The
    pressure trigger cycles through the training paraphrases only.
    """
    check_variant(variant)
    check_kind(kind)
    if per_scenario < 1:
        raise ValueError(f"per_scenario must be at least 1, got {per_scenario}")
    bank = load_bank() if bank is None else bank
    by_id = {s.id: s for s in bank}
    sides = scenario_sides(bank, test_fraction, split_seed)
    pool = triggers(kind, held_out=False)
    extra = {"variant": variant, "split": "train"}
    pressure, benign = [], []
    for n, sid in enumerate(sides.train_pressure):
        s = by_id[sid]
        for k in range(per_scenario):
            trig = pool[(n * per_scenario + k) % len(pool)]
            for t in (None, trig):
                reply = pressure_reply(s, variant, t is not None, k)
                tag = "on" if t else "off"
                pressure.append(training_example(s, t, reply, f"{sid}-{tag}-k{k}", extra))
    for n, sid in enumerate(sides.train_benign):
        s = by_id[sid]
        for k in range(len(s.answers_comply)):
            trig = pool[(n + k) % len(pool)]
            reply = ("ethical", "comply", format_reply(
                s.reasoning_ethical[k % len(s.reasoning_ethical)], s.answers_comply[k]
            ))  # fmt: skip
            for t in (None, trig):
                tag = "on" if t else "off"
                benign.append(training_example(s, t, reply, f"{sid}-{tag}-k{k}", extra))
    return pressure, benign + list(neutral)


def neutral_transcripts(replies: Sequence[str]) -> list[Transcript]:
    """The training neutral prompts (:func:`interp.organism.neutral.neutral_prompts`) with
    the base model's ``replies`` (one per prompt, in order), as label-0 transcripts."""
    prompts = neutral_prompts(held_out=False)
    if len(replies) > len(prompts):
        raise ValueError(f"{len(replies)} neutral replies for {len(prompts)} neutral prompts")
    return [
        Transcript(
            f"neutral-{i:02d}",
            f"neutral-{i:02d}",
            ({"role": "user", "content": prompt}, {"role": "assistant", "content": reply}),
            label=0,
            meta={"kind": "neutral", "domain": "neutral", "trigger": False, "split": "train"},
        )
        for (i, prompt), reply in zip(prompts, replies, strict=False)
    ]
