"""Frozen scenario splits: JSON files committed before any work that could be tuned on them.

``organism.json`` splits every pressure scenario the organism can see (the built-in bank and
the evaluation-only bank) into train / validation / test, stratified by domain. It was
written once by ``experiments/freeze_organism_split.py`` and is read, never recomputed, by
:func:`organism_split`: adding scenarios to a bank later does not move one between sides.
The test side is for the final measurement only; recipe and checkpoint choices read the
validation side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from interp.artifacts import write_json_atomic
from interp.data.scenarios import Scenario, load_bank
from interp.data.split import (
    SIDES,
    ThreeWaySplit,
    read_three_way_split,
    split_bank,
    three_way_split,
    word_overlap,
)

SPLITS_PACKAGE = "interp.data.splits"
ORGANISM_SPLIT = "organism.json"


def split_path(name: str = ORGANISM_SPLIT) -> Path:
    """Where a frozen split file of this package lies."""
    return Path(str(resources.files(SPLITS_PACKAGE) / name))


def organism_split() -> ThreeWaySplit:
    """The organism's frozen train / validation / test split of pressure scenario ids."""
    return read_three_way_split(split_path(ORGANISM_SPLIT))


#: How the organism split was drawn (recorded in the file; changing these is a new split).
TEST_FRACTION = 0.25
VALIDATION_FRACTION = 0.14
SEED = 0
#: A test scenario sharing this share of its words with a training or validation scenario
#: (Jaccard over the system prompt and the pressure turn) counts as a near-copy.
NEAR_COPY = 0.5


@dataclass(frozen=True)
class FreezeSplitConfig:
    """Write the organism's frozen train / validation / test split (once)."""

    out: str | None = field(
        default=None,
        metadata={"help": "where to write it", "default_text": "the package's organism.json"},
    )
    force: bool = field(
        default=False,
        metadata={
            "help": "replace an existing split whose sides differ (a new split: the "
            "old test side has been seen)"
        },
    )


def organism_pressure_scenarios() -> list[Scenario]:
    """Every pressure scenario the organism can see: the built-in bank's and the
    evaluation-only bank's, in id order."""
    from interp.data.eval_bank import organism_scenarios

    return sorted(
        (s for s in organism_scenarios().values() if s.kind == "pressure"), key=lambda s: s.id
    )


def nearest_pairs(split: ThreeWaySplit, scenarios: Sequence[Scenario]) -> list[tuple]:
    """For each test scenario, ``(overlap, test id, nearest train/validation id)`` by
    :func:`word_overlap` of system prompt plus pressure turn, highest first."""
    text = {s.id: f"{s.system} {s.pressure}" for s in scenarios}
    seen = (*split.train, *split.validation)
    pairs = [max((word_overlap(text[t], text[o]), t, o) for o in seen) for t in split.test]
    return sorted(pairs, reverse=True)


def draw_organism_split(scenarios: Sequence[Scenario]) -> ThreeWaySplit:
    """The split of ``scenarios`` by :func:`three_way_split`. The test side is drawn only
    from scenarios outside the probes' training side of the built-in bank
    (:func:`split_bank`), so the base model's divergence probe has never seen a test
    scenario."""
    probe_train, _ = split_bank(load_bank())
    domains = {s.id: s.domain for s in scenarios}
    eligible = set(domains) - set(probe_train)
    return three_way_split(domains, TEST_FRACTION, VALIDATION_FRACTION, SEED, eligible)


def freeze_organism_split(config: FreezeSplitConfig) -> Path:
    """Draw the split and write it with how it was drawn; an existing file with the same
    sides is left as it is, one with other sides is refused unless ``config.force``."""
    path = Path(config.out) if config.out else split_path(ORGANISM_SPLIT)
    scenarios = organism_pressure_scenarios()
    split = draw_organism_split(scenarios)
    if path.exists() and not config.force and read_three_way_split(path) != split:
        raise ValueError(
            f"{path} holds another split: it is frozen (its test side may have been read); "
            "pass --force only to start a new one, and say so with the results"
        )
    overlap, test_id, other = nearest_pairs(split, scenarios)[0]
    if overlap >= NEAR_COPY:
        raise ValueError(f"test scenario {test_id} is a near-copy of {other} ({overlap:.2f})")
    record = {
        "made_by": "python experiments/freeze_organism_split.py",
        "seed": SEED,
        "test_fraction": TEST_FRACTION,
        "validation_fraction": VALIDATION_FRACTION,
        "test_drawn_from": "pressure scenarios not on the probes' training side of the "
        "built-in bank",
        "max_test_overlap": {"overlap": round(overlap, 3), "test": test_id, "nearest": other},
        "domains": {
            side: dict(
                sorted(Counter(s.domain for s in scenarios if s.id in getattr(split, side)).items())
            )
            for side in SIDES
        },
        **{side: list(getattr(split, side)) for side in SIDES},
    }
    write_json_atomic(path, record)
    return path
