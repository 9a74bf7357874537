"""The hand-labelled reference sets: model replies with hand labels, the yardstick the judges
are scored against (:mod:`interp.text.judging.accuracy`, ``python
experiments/judge_accuracy.py``).

Each set is a folder of this package with ``replies.jsonl`` (transcript format),
``labels.jsonl`` (hand labels of the four verdict fields, the format of
:func:`interp.text.judging.export_for_labelling`), optionally ``labels_second.jsonl`` (a
second annotator's independent labels) and a ``README.md`` saying how it was made:

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

from importlib import resources
from pathlib import Path

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
