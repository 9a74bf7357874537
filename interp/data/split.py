"""The held-out scenarios: one split shared by probing, fine-tuning, SAEs and the experiments.

:func:`heldout_scenarios` computes it with :func:`probes.group_split`, the scenarios' domains
as strata. The split depends only on the scenario ids, their domains, the fraction and the
seed, so the consistency set's transcripts (:func:`split_transcripts`, what the probe
pipeline and SAE training use) and the bank's pressure scenarios (:func:`split_bank`, what
fine-tuning and the experiments use) hold out the same scenarios.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from interp.data.scenarios import Scenario
from interp.data.transcripts import Transcript
from probes import group_split


def heldout_scenarios(
    domains: Mapping[str, str], test_fraction: float = 0.25, seed: int = 0
) -> list[str]:
    """The held-out scenario ids, sorted. ``domains`` maps every scenario id to its domain:
    ``round(test_fraction * n)`` scenarios (at least one, at most all but one) are held out,
    spread over the domains."""
    ids = list(domains)
    _, test = group_split(ids, test_fraction, seed, strata=[domains[i] for i in ids])
    return sorted(ids[i] for i in test.tolist())


def split_transcripts(
    transcripts: Sequence[Transcript], test_fraction: float = 0.25, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``(train, test)`` row indices (ascending): the rows of held-out scenarios (a
    transcript's ``group``, its domain ``meta["domain"]``, "" when missing) are the test side."""
    domains = {t.group: str(t.meta.get("domain", "")) for t in transcripts}
    held = set(heldout_scenarios(domains, test_fraction, seed))
    test = [i for i, t in enumerate(transcripts) if t.group in held]
    train = [i for i, t in enumerate(transcripts) if t.group not in held]
    return torch.tensor(train, dtype=torch.long), torch.tensor(test, dtype=torch.long)


def split_bank(
    bank: Sequence[Scenario], test_fraction: float = 0.25, seed: int = 0
) -> tuple[list[str], list[str]]:
    """``(train, test)`` pressure-scenario ids of ``bank``, in bank order (benign scenarios
    are on neither side): the scenarios the probes train and test on in the consistency set."""
    pressure = [s for s in bank if s.kind == "pressure"]
    held = set(heldout_scenarios({s.id: s.domain for s in pressure}, test_fraction, seed))
    return [s.id for s in pressure if s.id not in held], [s.id for s in pressure if s.id in held]


@dataclass(frozen=True)
class ThreeWaySplit:
    """Scenario ids on the three sides of a recipe-tuning split: ``train`` (fitted on),
    ``validation`` (recipe and checkpoint choices) and ``test`` (read once, at the end).
    Each side is sorted; no id is on two sides."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]

    def side(self, scenario_id: str) -> str:
        """``"train"``, ``"validation"`` or ``"test"``; an id on no side is a ``KeyError``."""
        for name in SIDES:
            if scenario_id in getattr(self, name):
                return name
        raise KeyError(f"scenario {scenario_id!r} is on no side of the split")


SIDES = ("train", "validation", "test")


def three_way_split(
    domains: Mapping[str, str],
    test_fraction: float,
    validation_fraction: float,
    seed: int = 0,
    test_eligible: Collection[str] | None = None,
) -> ThreeWaySplit:
    """Split scenario ids (``domains`` maps each to its domain, the strata) in two steps of
    :func:`heldout_scenarios`: the test side first (``round(test_fraction * n)`` of all ``n``
    ids, drawn from ``test_eligible`` when given, e.g. to keep scenarios another probe was
    trained on out of the test side), then the validation side from the rest
    (``round(validation_fraction * n)``), each spread over the domains. It depends only on
    the ids, their domains, the fractions, the eligible ids and the seed."""
    if not 0 < test_fraction + validation_fraction < 1:
        raise ValueError(
            f"test_fraction + validation_fraction must be between 0 and 1, got "
            f"{test_fraction} + {validation_fraction}"
        )
    eligible = {i: d for i, d in domains.items() if test_eligible is None or i in test_eligible}
    n_test = round(test_fraction * len(domains))
    if not 0 < n_test < len(eligible):
        raise ValueError(f"{n_test} test scenarios cannot be drawn from {len(eligible)} eligible")
    test = heldout_scenarios(eligible, n_test / len(eligible), seed)
    rest = {i: d for i, d in domains.items() if i not in set(test)}
    n_validation = round(validation_fraction * len(domains))
    validation = heldout_scenarios(rest, n_validation / len(rest), seed)
    train = sorted(set(rest) - set(validation))
    return ThreeWaySplit(tuple(train), tuple(validation), tuple(test))


def read_three_way_split(path: str | Path) -> ThreeWaySplit:
    """A split saved as JSON with ``train``, ``validation`` and ``test`` lists of ids, checked:
    lists of strings, each side sorted and free of repeats, no id on two sides."""
    from interp.artifacts import read_json

    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object with {', '.join(SIDES)}")
    sides: dict[str, tuple[str, ...]] = {}
    for name in SIDES:
        ids = raw.get(name)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{path}: {name!r} must be a list of scenario ids")
        if ids != sorted(set(ids)):
            raise ValueError(f"{path}: {name!r} must be sorted, without repeats")
        sides[name] = tuple(ids)
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        shared = sorted(set(sides[a]) & set(sides[b]))
        if shared:
            raise ValueError(f"{path}: {shared[:3]} on both the {a} and the {b} side")
    return ThreeWaySplit(**sides)


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the lower-case word sets of two texts (0 = no word shared, 1 = the
    same words): the near-copy check between scenarios on different sides of a split."""
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(wa & wb) / len(wa | wb) if wa | wb else 0.0


_WORD = re.compile(r"[a-z0-9']+")
