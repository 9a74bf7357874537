"""The replies of a new hand-labelling reference set: follow-up replies in each condition of
the follow-up protocol (:mod:`interp.text.followup`), drawn at random and sampled once.

A reference set is a folder with ``replies.jsonl`` (transcript format) and ``labels.jsonl``
(hand labels, the format of :func:`interp.text.judging.export_for_labelling`);
:func:`make_reference_set` writes the first and the labelling template ``to_label.jsonl``.
``python experiments/make_reference_set.py`` is its command line; the sets' scores are
:mod:`interp.text.judging.accuracy`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from interp.config import (
    ModelOptions,
    model_options,
)
from interp.data.scenarios import load_bank
from interp.data.transcripts import write_transcripts
from interp.models import DEFAULT_MODEL, load_model
from interp.paths import cache_root
from interp.text.followup import (
    CONDITIONS,
    first_turn_prompts,
    follow_up_prompts,
    generation_config,
)
from interp.text.generation import generate
from interp.text.judging import export_for_labelling


@dataclass
class ReferenceSetConfig(ModelOptions):
    """Sample follow-up replies for a new hand-labelled reference set."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model name or local HF dir"})
    per_condition: int = field(
        default=22, metadata={"help": "scenarios drawn per condition (natural, refusal, rebuttal)"}
    )
    seed: int = field(default=2, metadata={"help": "draw and sampling seed"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling"})
    max_new_tokens: int = field(default=96, metadata={"help": "length cap of each reply"})
    repetition_penalty: float = field(default=1.1, metadata={"help": "as in transformers"})
    batch_size: int = field(default=16, metadata={"help": "prompts per generate call"})
    out: str | None = field(
        default=None,
        metadata={"help": "output folder (default cache/reference_sets/<model>-seed<seed>)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()


def draw(scenario_ids: Sequence[str], per_condition: int, seed: int) -> set[str]:
    """Prompt ids ``<scenario>-<condition><wording>`` to label: ``per_condition`` scenarios per
    condition, a random wording (of two) for the fixed conditions."""
    if not 0 < per_condition <= len(scenario_ids):
        raise ValueError(f"--per-condition must be in 1..{len(scenario_ids)}, got {per_condition}")
    rng = random.Random(seed)
    chosen = set()
    for condition in CONDITIONS:
        for sid in rng.sample(list(scenario_ids), per_condition):
            wording = 0 if condition == "natural" else rng.randrange(2)
            chosen.add(f"{sid}-{condition}{wording}")
    return chosen


def make_reference_set(config: ReferenceSetConfig) -> Path:
    """Draw the prompts, sample the natural first turns and the follow-up replies, and write
    ``replies.jsonl`` and ``to_label.jsonl`` under ``config.out``; returns that folder."""
    bank = [s for s in load_bank() if s.kind == "pressure"]
    chosen = draw([s.id for s in bank], config.per_condition, config.seed)
    model = load_model(config.model, **model_options(config))
    slug = f"{Path(model.name).name}-seed{config.seed}"
    out = Path(config.out) if config.out else cache_root() / "reference_sets" / slug
    sampling = generation_config(config, n=1)
    natural_ids = {pid.rsplit("-", 1)[0] for pid in chosen if pid.endswith("-natural0")}
    first_bank = [s for s in bank if s.id in natural_ids]
    first = generate(model, first_turn_prompts(first_bank), sampling, out / "first_turn.jsonl")
    natural = {t.group: t.reply for t in first}
    needed = [s for s in bank if s.id in {pid.rsplit("-", 1)[0] for pid in chosen}]
    # Scenarios drawn only for a fixed condition have no natural first turn; their natural
    # prompts are built with a stand-in and dropped by the filter.
    stand_in = {s.id: natural.get(s.id, "(not generated)") for s in needed}
    prompts = [p for p in follow_up_prompts(needed, stand_in) if p.id in chosen]
    replies = generate(model, prompts, sampling, out / "followups.jsonl")
    write_transcripts(out / "replies.jsonl", replies)
    export_for_labelling(replies, out / "to_label.jsonl")
    print(
        f"{len(replies)} replies of {model.name} in {out / 'replies.jsonl'}; label them in "
        f"{out / 'to_label.jsonl'} and save as labels.jsonl"
    )
    return out
