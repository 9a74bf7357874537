"""The one held-out scenario split (``interp.data.split``): what it is, and that probing,
fine-tuning and SAE training all hold out the same scenarios of the built-in set."""

from __future__ import annotations

import pytest
import torch

import interp.probe.pipeline as pipeline
import interp.sae.train as sae_train
from interp.data.datasets import build_benign, build_consistency, subset_groups
from interp.data.scenarios import load_bank
from interp.data.split import heldout_scenarios, split_bank, split_transcripts
from interp.finetune import FinetuneConfig, build_examples
from interp.probe import ProbeConfig, train_probe
from interp.sae.config import SAEConfig
from probes import group_split


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_split_is_group_split_with_domains_as_strata(seed, fraction):
    """The definition every earlier copy of the split used, row for row."""
    consistency = build_consistency()
    for data in (consistency, subset_groups(consistency, 6, seed), consistency + build_benign()):
        expected = group_split(
            [t.group for t in data],
            fraction,
            seed,
            strata=[str(t.meta.get("domain", "")) for t in data],
        )
        for got, want in zip(split_transcripts(data, fraction, seed), expected, strict=True):
            assert torch.equal(got, want) and got.dtype == torch.long


def test_heldout_scenarios_and_the_bank_split():
    bank = load_bank()
    pressure = [s for s in bank if s.kind == "pressure"]
    domains = {s.id: s.domain for s in pressure}
    held = heldout_scenarios(domains)
    assert held == sorted(held) and len(held) == round(0.25 * len(pressure))
    assert {domains[i] for i in held} == set(domains.values())  # spread over the domains
    train, test = split_bank(bank)
    assert sorted(test) == held and set(train) == set(domains) - set(held)
    assert train == [s.id for s in pressure if s.id in set(train)]  # bank order
    assert heldout_scenarios(domains, 0.25, 1) != held  # the seed matters
    with pytest.raises(ValueError, match="at least 2 groups"):
        heldout_scenarios({"only": "sales"})


class _Split(Exception):
    """Raised by the spy once a pipeline has split its data (nothing after it runs)."""


def _spy_on_split(monkeypatch, module, name, seen):
    def spy(transcripts, test_fraction, seed):
        _, test = split_transcripts(transcripts, test_fraction, seed)
        seen[name] = {transcripts[i].group for i in test.tolist()}
        raise _Split

    monkeypatch.setattr(module, "cache_activations", lambda *a, **k: None)
    monkeypatch.setattr(module, "split_transcripts", spy)


def test_probes_finetuning_and_saes_hold_out_the_same_scenarios(tiny_model, monkeypatch, tmp_path):
    """Each part's own code path on the built-in set (default configs), up to its split."""
    seen: dict[str, set[str]] = {}
    _spy_on_split(monkeypatch, pipeline, "probe", seen)
    with pytest.raises(_Split):
        train_probe(ProbeConfig(layers=0, cache_dir=str(tmp_path), progress=False), tiny_model)
    _spy_on_split(monkeypatch, sae_train, "sae", seen)
    with pytest.raises(_Split):
        sae_train.prepare_data(SAEConfig(layer=0, progress=False), tiny_model, tmp_path)

    config = FinetuneConfig()
    pressure, _ = build_examples("rebuttal", config.test_fraction, config.split_seed)
    bank_pressure = {s.id for s in load_bank() if s.kind == "pressure"}
    finetune_held = bank_pressure - {t.group for t in pressure}

    assert seen["probe"] == seen["sae"] == finetune_held == set(split_bank(load_bank())[1])
    assert len(finetune_held) == 12
