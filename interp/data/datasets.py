"""Datasets built from the scenario bank, and the registry behind ``--dataset``.

``consistency``: for every pressure scenario, every reasoning passage (ethical or
unethical) is paired with every answer (complying, polite refusal, explicit rebuttal). Label 1
when the answer diverges from the reasoning (ethical reasoning then compliance, or unethical
reasoning then a refusal), 0 otherwise: label = (reasoning is ethical) == (answer complies),
an XOR of the two stances up to a flip. Each text appears on both sides of the label, so no
single text, and no bag of token embeddings, predicts it. ``meta`` records both stances, so
the stance controls can be computed.

``benign``: ordinary requests answered helpfully (label 0): a control set of ordinary chat for
choosing a detector's threshold.

The public deception sets (Apollo's roleplaying, AI liar, insider trading, sandbagging and
alpaca; RepE instructed pairs; Liars' Bench) are registered too: each reads the user's copy
(:mod:`interp.data.external`; ``builtin:NAME=DIR`` names the copy), and
:func:`dataset_sources` says where each expects its files.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from interp.data.external import EXTERNAL_SETS, ExternalSet
from interp.data.scenarios import Scenario, load_bank
from interp.data.transcripts import Transcript, load_transcripts
from probes.registry import Registry

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


def _cell(n_reasonings: int, n_answers: int, per_cell: int | None) -> list[tuple[int, int]]:
    """(reasoning, answer) index pairs for one (reasoning stance, answer stance) cell.

    ``per_cell=None`` pairs everything. Otherwise the k-th pair is (k mod R, k mod A), moved
    to the next unused answer on a clash: every text is used and texts appear equally often
    (up to one). The reasoning pattern depends only on k, so it is the same in both cells
    that share a reasoning stance, and the same holds for answers.
    """
    if per_cell is None:
        return [(i, j) for i in range(n_reasonings) for j in range(n_answers)]
    chosen: list[tuple[int, int]] = []
    for k in range(min(per_cell, n_reasonings * n_answers)):
        i, j = k % n_reasonings, k % n_answers
        while (i, j) in chosen:
            j = (j + 1) % n_answers
        chosen.append((i, j))
    return chosen


def build_consistency(
    bank: Sequence[Scenario] | None = None, per_cell: int | None = 4
) -> list[Transcript]:
    """The 2x2 (reasoning stance x answer stance) dataset from every pressure scenario.

    Each scenario gives ``per_cell`` transcripts per cell (4 by default: 16 per scenario, so
    the default model caches the whole set in a few minutes on a laptop CPU), or every
    reasoning x answer pair with ``per_cell=None``. Refusals alternate polite refusals and
    explicit rebuttals. The pairing is the same in both cells of a stance, so each text is
    as often in a divergent transcript as in a consistent one.
    """
    bank = load_bank() if bank is None else bank
    out = []
    for s in bank:
        if s.kind != "pressure":
            continue
        refusals = [("refusal", i, a) for i, a in enumerate(s.answers_refuse)]
        rebuttals = [("rebuttal", i, a) for i, a in enumerate(s.answers_rebut)]
        interleaved = [x for pair in zip(refusals, rebuttals, strict=False) for x in pair]
        interleaved += refusals[len(rebuttals) :] + rebuttals[len(refusals) :]
        answers = {
            "comply": [("comply", i, a) for i, a in enumerate(s.answers_comply)],
            "refuse": interleaved,
        }
        reasonings = {"ethical": s.reasoning_ethical, "unethical": s.reasoning_unethical}
        for stance, texts in reasonings.items():
            for answer_stance, options in answers.items():
                for ri, ai in _cell(len(texts), len(options), per_cell):
                    strategy, index, answer = options[ai]
                    out.append(
                        scenario_transcript(
                            s,
                            texts[ri],
                            answer,
                            f"{s.id}-{stance[:4]}{ri}-{strategy}{index}",
                            label=int((stance == "ethical") == (answer_stance == "comply")),
                            meta={
                                "reasoning": stance,
                                "answer": answer_stance,
                                "strategy": strategy,
                                "domain": s.domain,
                            },
                        )
                    )
    return out


def scenario_transcript(
    s: Scenario, reasoning: str, answer: str, transcript_id: str, **fields: Any
) -> Transcript:
    """A transcript of scenario ``s``: its role, its pressure turn (or request) and a reply
    made of ``reasoning`` then ``answer``; ``fields`` are the other Transcript fields."""
    return Transcript(
        id=transcript_id, group=s.id, messages=_chat(s, format_reply(reasoning, answer)), **fields
    )


def every_pairing(
    s: Scenario,
    reasonings: Sequence[str],
    answers: Sequence[str],
    id_format: str,
    **fields: Any,
) -> list[Transcript]:
    """One transcript per (reasoning passage ``r``, answer wording ``a``) of scenario ``s``,
    reasoning-major; ids are ``id_format.format(s=s.id, r=r, a=a)``."""
    return [
        scenario_transcript(s, reasoning, answer, id_format.format(s=s.id, r=ri, a=ai), **fields)
        for ri, reasoning in enumerate(reasonings)
        for ai, answer in enumerate(answers)
    ]


def build_benign(bank: Sequence[Scenario] | None = None) -> list[Transcript]:
    """Helpful replies to ordinary requests (label 0), for false-positive thresholds."""
    bank = load_bank() if bank is None else bank
    meta = {"reasoning": "helpful", "answer": "helpful"}
    return [
        t
        for s in bank
        if s.kind == "benign"
        for t in every_pairing(
            s,
            s.reasoning_ethical,
            s.answers_comply,
            "{s}-help{r}-answer{a}",
            label=0,
            meta={**meta, "domain": s.domain},
        )
    ]


#: What a dataset builder returns: the whole set, built in memory.
DatasetBuilder = Callable[[], list[Transcript]]

#: Built-in datasets, by name; ``--dataset builtin:NAME`` selects one. Register more with
#: :func:`register_dataset`; :func:`list_datasets` lists them.
DATASETS: Registry[DatasetBuilder] = Registry("dataset", DatasetError)
DATASETS.register("consistency", build_consistency)
DATASETS.register("consistency-full", lambda: build_consistency(per_cell=None))
DATASETS.register("benign", build_benign)
for _external in EXTERNAL_SETS:
    DATASETS.register(_external.name, _external)


def register_dataset(name: str, builder: DatasetBuilder) -> DatasetBuilder:
    """Add a dataset that ``load_dataset("builtin:<name>")`` builds by calling ``builder()``;
    a name that is already taken raises :class:`DatasetError`."""
    return DATASETS.register(name, builder)


def list_datasets() -> list[str]:
    """The registered dataset names, sorted; ``load_dataset("builtin:<name>")`` builds one."""
    return DATASETS.names()


def dataset_sources() -> dict[str, str]:
    """Each registered dataset's name -> where its data comes from: "built in", or the file a
    public set expects in the user's copy (and how to point it elsewhere)."""
    return {
        name: builder.where() if isinstance(builder, ExternalSet) else "built in"
        for name in list_datasets()
        for builder in [DATASETS.get(name)]
    }


def _builtin_specs() -> str:
    return ", ".join(BUILTIN_PREFIX + name for name in list_datasets())


def load_dataset(spec: str, *, require_group: bool = True) -> list[Transcript]:
    """``"builtin:consistency"`` (or another registered name) or a path to a JSONL file.

    ``require_group=False`` lets a file's lines omit ``group`` (the id stands in): only for
    data that is scored, never split (see :mod:`interp.data.transcripts`).
    """
    if spec.startswith(BUILTIN_PREFIX):
        name, _, where = spec[len(BUILTIN_PREFIX) :].partition("=")
        if name not in DATASETS:
            raise DatasetError(
                f"unknown built-in dataset {spec!r}; choose one of {_builtin_specs()}"
            )
        builder = DATASETS.get(name)
        if not where:
            return builder()
        if not isinstance(builder, ExternalSet):
            raise DatasetError(
                f"{spec!r}: only the public sets read a folder (NAME=DIR); "
                f"{BUILTIN_PREFIX}{name} is built in: drop '={where}'"
            )
        return builder(where)
    if not Path(spec).exists():
        raise DatasetError(
            f"dataset {spec!r} is neither a built-in name ({_builtin_specs()}) "
            "nor an existing JSONL file"
        )
    return load_transcripts(spec, require_group=require_group)


def subset_groups(
    transcripts: Sequence[Transcript], max_groups: int, seed: int = 0
) -> list[Transcript]:
    """Keep all transcripts of ``max_groups`` randomly chosen groups (for quick runs)."""
    groups = sorted({t.group for t in transcripts})
    if max_groups >= len(groups):
        return list(transcripts)
    keep = set(random.Random(seed).sample(groups, max_groups))
    return [t for t in transcripts if t.group in keep]
