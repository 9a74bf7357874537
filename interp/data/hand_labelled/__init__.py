"""The hand-labelled reference sets: model replies with hand labels, the yardstick the judges
are scored against (:mod:`interp.text.judging.accuracy`, ``python
experiments/judge_accuracy.py``).

Each set is a folder of this package with ``replies.jsonl`` (transcript format),
``labels.jsonl`` (hand labels of the four verdict fields, the format of
:func:`interp.text.judging.export_for_labelling`), optionally ``labels_second.jsonl`` (a
second annotator's independent labels), ``annotators.json`` (who made each labels file: a
person or a language model, :func:`annotator`) and a ``README.md`` saying how it was made.
Every set shipped here was labelled by language-model annotators (Claude sessions of this
project's team, reading reply by reply; no code decided a label): "hand labels" in the code
means labels made by reading, not labels made by people.

- ``tuning``: the default model's replies that the rule judge's phrase rules were tuned on
  (first-turn replies and follow-ups after a fixed refusal);
- ``fresh``: labelled later (follow-ups after a fixed rebuttal and after the model's own
  reply); read while writing the follow-up criteria, so no longer a clean test set;
- ``seed2``: follow-ups in all three conditions, two annotators; scored once, then read while
  revising the phrase lists;
- ``seed3``: made the same way after that revision and never read while writing rules;
- ``organism``: the fine-tuned organism O's first-turn replies (built-in and eval-bank
  scenarios, trigger on and off); not a default set, since it scores the judge on another
  model's replies.

They are package data, found through the package (:func:`reference_set`), so the judges can
be scored from an installed copy as well as from the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from interp.artifacts import read_json

PACKAGE = "interp.data.hand_labelled"
#: Every set, in the order they were made.
SETS = ("tuning", "fresh", "seed2", "seed3", "organism")
#: The sets ``experiments/judge_accuracy.py`` scores by default (the default model's replies).
DEFAULT_SETS = ("tuning", "fresh", "seed2", "seed3")


def reference_set(name: str) -> Path:
    """The folder of the hand-labelled set ``name`` (one of :data:`SETS`)."""
    if name not in SETS:
        raise ValueError(f"unknown hand-labelled set {name!r}; choose one of {', '.join(SETS)}")
    return Path(str(resources.files(PACKAGE) / name))


#: Who can make a set's labels: a person, or a language model reading reply by reply.
ANNOTATOR_KINDS = ("human", "language-model")
ANNOTATORS_FILE = "annotators.json"


@dataclass(frozen=True)
class Annotator:
    """Who made one labels file of a set: ``kind`` (one of :data:`ANNOTATOR_KINDS`, or
    ``"unrecorded"`` for a set without ``annotators.json``), ``model`` (for a language
    model), ``who`` (which annotator, how they worked) and ``made`` (the date)."""

    kind: str
    model: str = ""
    who: str = ""
    made: str = ""

    def describe(self) -> str:
        """A short phrase for tables: "language-model annotator (Claude ...)"."""
        if self.kind == "unrecorded":
            return "annotator not recorded (no annotators.json)"
        return f"{self.kind} annotator" + (f" ({self.model})" if self.model else "")


def annotator(folder: str | Path, labels_file: str = "labels.jsonl") -> Annotator:
    """Who made ``labels_file`` of the set in ``folder``, from its ``annotators.json``
    (``{"labels.jsonl": {"kind": ..., "model": ..., "who": ..., "made": ...}, ...}``).
    A set without that file (a user's own) gives ``kind="unrecorded"``; a file that exists
    but does not name ``labels_file`` or names an unknown kind is an error."""
    path = Path(folder) / ANNOTATORS_FILE
    if not path.is_file():
        return Annotator("unrecorded")
    raw = read_json(path)
    entry = raw.get(labels_file) if isinstance(raw, dict) else None
    fix = f'add {{"{labels_file}": {{"kind": "human" or "language-model", "who": ...}}}}'
    if not isinstance(entry, dict) or entry.get("kind") not in ANNOTATOR_KINDS:
        raise ValueError(f"{path}: no annotator of kind {ANNOTATOR_KINDS} for {labels_file}; {fix}")
    unknown = set(entry) - {"kind", "model", "who", "made"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} for {labels_file}")
    return Annotator(**{k: str(v) for k, v in entry.items()})
