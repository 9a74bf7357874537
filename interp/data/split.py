"""The held-out scenarios: one split shared by probing, fine-tuning, SAEs and the experiments.

:func:`heldout_scenarios` computes it with :func:`probes.group_split`, the scenarios' domains
as strata. The split depends only on the scenario ids, their domains, the fraction and the
seed, so the consistency set's transcripts (:func:`split_transcripts`, what the probe
pipeline and SAE training use) and the bank's pressure scenarios (:func:`split_bank`, what
fine-tuning and the experiments use) hold out the same scenarios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
