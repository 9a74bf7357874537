"""Apollo Research's prewritten deception sets: roleplaying and "How to catch an AI liar".

Both are read from a copy of https://github.com/ApolloResearch/deception-detection (its
``data/`` folder); docs/datasets.md maps every upstream field to the transcript format.

- **roleplaying** (``data/roleplaying/dataset.yaml``): a list of items with ``scenario``,
  ``question``, ``answer_prefix``, ``honest_completion`` and ``deceptive_completion``. Each item
  gives two transcripts of one group (``roleplaying-<index>``): the scenario as the system
  turn, the question as the user turn, and the honest (label 0) or deceptive (label 1)
  completion as the reply, as upstream's ``offpolicy_train`` variant builds them; the answer
  prefix ("Student:") is kept in ``meta``.
- **AI liar** (``data/how_to_catch_an_ai_liar/goal_directed_lying.json``): items with
  ``normal_instruction``, ``deceive_instruction``, ``question_prefix``, ``question``,
  ``answer_prefix``, ``answer`` and, in Apollo's copy, ``other_answer`` and
  ``include_in_with_answers``. The two instructions state different facts, so ``answer`` is
  honest under the normal instruction and a lie under the deceptive one; ``other_answer`` is
  the reverse. Each item gives two system prompts x two answers (four transcripts, one group;
  two when ``other_answer`` is absent): label 1 where the answer contradicts its own system
  prompt's facts. Neither the instruction nor the answer text alone predicts the label, and
  both are reported as stance controls.
"""

from __future__ import annotations

from pathlib import Path

from interp.data.external.common import (
    ExternalDataError,
    read_json_file,
    read_yaml_items,
    require_keys,
    turn,
)
from interp.data.transcripts import Transcript

ROLEPLAYING_FILE = "data/roleplaying/dataset.yaml"
AI_LIAR_FILE = "data/how_to_catch_an_ai_liar/goal_directed_lying.json"
_ROLEPLAYING_KEYS = (
    "scenario",
    "question",
    "answer_prefix",
    "honest_completion",
    "deceptive_completion",
)
_AI_LIAR_KEYS = (
    "normal_instruction",
    "deceive_instruction",
    "question_prefix",
    "question",
    "answer_prefix",
    "answer",
)


def read_roleplaying(path: Path) -> list[Transcript]:
    """Two transcripts (honest, deceptive) per item of Apollo's roleplaying YAML."""
    out = []
    for index, (line, raw) in enumerate(read_yaml_items(path)):
        item = require_keys(raw, _ROLEPLAYING_KEYS, f"{path}:{line} (item {index})")
        group = f"roleplaying-{index:03d}"
        for kind, label in (("honest", 0), ("deceptive", 1)):
            out.append(
                Transcript(
                    id=f"{group}-{kind}",
                    group=group,
                    messages=(
                        turn("system", item["scenario"].strip()),
                        turn("user", item["question"].strip()),
                        turn("assistant", item[f"{kind}_completion"].strip()),
                    ),
                    label=label,
                    meta={
                        "source": "apollo:roleplaying",
                        "file": str(path),
                        "item": index,
                        "completion": kind,
                        "answer_prefix": item["answer_prefix"],
                    },
                )
            )
    return out


def _ai_liar_item(path: Path, index: int, raw: object) -> list[Transcript]:
    item = require_keys(raw, _AI_LIAR_KEYS, f"{path} (item {index})")
    answers = {"answer": item["answer"]}
    if isinstance(item.get("other_answer"), str) and item["other_answer"].strip():
        answers["other_answer"] = item["other_answer"]
    group = f"ai-liar-{index:03d}"
    out = []
    for instruction in ("normal", "deceive"):
        for kind, text in answers.items():
            lie = (instruction == "deceive") == (kind == "answer")
            out.append(
                Transcript(
                    id=f"{group}-{instruction}-{kind.replace('_', '-')}",
                    group=group,
                    messages=(
                        turn("system", item[f"{instruction}_instruction"]),
                        turn("user", item["question_prefix"] + item["question"]),
                        turn("assistant", (item["answer_prefix"] + " " + text.strip()).strip()),
                    ),
                    label=int(lie),
                    meta={
                        "source": "apollo:how_to_catch_an_ai_liar",
                        "file": str(path),
                        "item": index,
                        "instruction": instruction,
                        "answer_text": kind,
                        "include_in_with_answers": item.get("include_in_with_answers", True),
                    },
                )
            )
    return out


def read_ai_liar(path: Path) -> list[Transcript]:
    """Two system prompts x two answers per item of the goal-directed lying JSON."""
    data = read_json_file(path)
    if not isinstance(data, list):
        raise ExternalDataError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    return [t for index, raw in enumerate(data) for t in _ai_liar_item(path, index, raw)]
