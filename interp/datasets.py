"""Datasets built from the scenario bank, and the registry behind ``--dataset``.

``consistency``: for every pressure scenario, every reasoning passage (ethical or
unethical) is paired with every answer (complying, polite refusal, explicit rebuttal). Label 1
when the answer diverges from the reasoning (ethical reasoning then compliance, or unethical
reasoning then a refusal), 0 otherwise. Because each text appears on both sides of the label,
no single text, and so no bag of token embeddings, predicts it: the label is the XOR of the
two stances, which ``meta`` records so stance controls can be computed.

``benign``: ordinary requests answered helpfully (label 0): a control set of ordinary chat for
choosing a detector's threshold.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from interp.scenarios import Scenario, load_bank
from interp.transcripts import Transcript, load_transcripts

BUILTIN_PREFIX = "builtin:"


class DatasetError(ValueError):
    """An unknown dataset name or an unusable dataset."""


def format_reply(reasoning: str, answer: str) -> str:
    return f"Reasoning: {reasoning}\nAnswer: {answer}"


def _chat(scenario: Scenario, reply: str) -> tuple[dict[str, str], ...]:
    return (
        {"role": "system", "content": scenario.system},
        {"role": "user", "content": scenario.pressure},
        {"role": "assistant", "content": reply},
    )


def build_consistency(bank: Sequence[Scenario] | None = None) -> list[Transcript]:
    """The 2x2 (reasoning stance x answer stance) dataset from every pressure scenario."""
    bank = load_bank() if bank is None else bank
    out = []
    for s in bank:
        if s.kind != "pressure":
            continue
        reasonings = [("ethical", i, r) for i, r in enumerate(s.reasoning_ethical)] + [
            ("unethical", i, r) for i, r in enumerate(s.reasoning_unethical)
        ]
        answers = (
            [("comply", "comply", i, a) for i, a in enumerate(s.answers_comply)]
            + [("refuse", "refusal", i, a) for i, a in enumerate(s.answers_refuse)]
            + [("refuse", "rebuttal", i, a) for i, a in enumerate(s.answers_rebut)]
        )
        for stance, ri, reasoning in reasonings:
            for answer_stance, strategy, ai, answer in answers:
                divergent = (stance == "ethical") == (answer_stance == "comply")
                out.append(
                    Transcript(
                        id=f"{s.id}-{stance[:4]}{ri}-{strategy}{ai}",
                        group=s.id,
                        messages=_chat(s, format_reply(reasoning, answer)),
                        label=int(divergent),
                        meta={
                            "reasoning": stance,
                            "answer": answer_stance,
                            "strategy": strategy,
                            "domain": s.domain,
                        },
                    )
                )
    return out


def build_benign(bank: Sequence[Scenario] | None = None) -> list[Transcript]:
    """Helpful replies to ordinary requests (label 0), for false-positive thresholds."""
    bank = load_bank() if bank is None else bank
    out = []
    for s in bank:
        if s.kind != "benign":
            continue
        for ri, reasoning in enumerate(s.reasoning_ethical):
            for ai, answer in enumerate(s.answers_comply):
                out.append(
                    Transcript(
                        id=f"{s.id}-help{ri}-answer{ai}",
                        group=s.id,
                        messages=_chat(s, format_reply(reasoning, answer)),
                        label=0,
                        meta={"reasoning": "helpful", "answer": "helpful", "domain": s.domain},
                    )
                )
    return out


#: Built-in datasets, by name; ``--dataset builtin:NAME`` selects one.
BUILTIN_DATASETS: dict[str, Callable[[], list[Transcript]]] = {
    "consistency": build_consistency,
    "benign": build_benign,
}


def load_dataset(spec: str) -> list[Transcript]:
    """``"builtin:consistency"`` (or another registered name) or a path to a JSONL file."""
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN_DATASETS:
            known = ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_DATASETS)
            raise DatasetError(f"unknown built-in dataset {spec!r}; choose one of {known}")
        return BUILTIN_DATASETS[name]()
    if not Path(spec).exists():
        raise DatasetError(
            f"dataset {spec!r} is neither a built-in name (builtin:consistency, builtin:benign) "
            "nor an existing JSONL file"
        )
    return load_transcripts(spec)


def subset_groups(
    transcripts: Sequence[Transcript], max_groups: int, seed: int = 0
) -> list[Transcript]:
    """Keep all transcripts of ``max_groups`` randomly chosen groups (for quick runs)."""
    groups = sorted({t.group for t in transcripts})
    if max_groups >= len(groups):
        return list(transcripts)
    keep = set(random.Random(seed).sample(groups, max_groups))
    return [t for t in transcripts if t.group in keep]
