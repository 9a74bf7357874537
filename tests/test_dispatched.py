"""Patching and SAE code on a model dispatched with accelerate (as ``device_map`` splits one
over GPUs) give the undispatched model's numbers, through accelerate's hooks.

On a machine without GPUs the dispatch is all-CPU (``dispatched_tiny``), so these tests check
the dispatched code path (inputs through the embedding's device, accelerate's hooks on each
module, blocks re-run on their recorded inputs), not transfers between devices.
"""

from __future__ import annotations

import pytest
import torch

from interp.patching import LogProbDiff, NextTokenKL, PatchInput, ProbeScore, Sweep, patch_sweep
from interp.sae.edits import feature_edit_hook, splice_hook
from interp.sae.intervene import answer_prompts, clean_diffs, intervene
from interp.sae.quality import reply_loss
from probes.logistic import LogisticProbe

SITES = ("resid_pre", "resid_mid", "attn_out", "mlp_out")
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture
def accelerate_calls(monkeypatch):
    """How many times accelerate's device hooks ran (``{"n": ...}``)."""
    from accelerate.hooks import AlignDevicesHook

    calls = {"n": 0}
    pre_forward = AlignDevicesHook.pre_forward

    def counted(self, module, *args, **kwargs):
        calls["n"] += 1
        return pre_forward(self, module, *args, **kwargs)

    monkeypatch.setattr(AlignDevicesHook, "pre_forward", counted)
    return calls


def _prompts(tok):
    clean = PatchInput(tok("Please sell the old car today.", return_tensors="pt").input_ids[0])
    corrupt = PatchInput(tok("Please hide the old car today.", return_tensors="pt").input_ids[0])
    return clean, corrupt


def _same(model, reference, run, calls):
    expected = run(reference)
    assert calls["n"] == 0
    got = run(model)
    assert calls["n"] > 0  # the dispatched model ran through accelerate's hooks
    return got, expected


@pytest.mark.parametrize(
    "metric",
    [
        lambda tok: LogProbDiff.from_text(tok, "Sure, here it is", "I can't"),
        lambda tok: NextTokenKL(),
    ],
    ids=["logprob", "kl"],
)
def test_patch_sweep_equals_the_undispatched_model(
    tiny_model, dispatched_tiny, accelerate_calls, metric
):
    assert dispatched_tiny.fingerprint == tiny_model.fingerprint
    assert hasattr(dispatched_tiny.bridge.original_model, "hf_device_map")
    source, target = _prompts(tiny_model.tokenizer)
    m = metric(tiny_model.tokenizer)

    def run(model):
        return patch_sweep(
            model, target, m, source_input=source, sites=SITES, batch_size=5, progress=False
        )

    got, expected = _same(dispatched_tiny, tiny_model, run, accelerate_calls)
    sweep = Sweep(dispatched_tiny, target, m, source_input=source, sites=SITES)
    assert sweep.runner.skips_positions  # resumed blocks and skipped positions were exercised
    torch.testing.assert_close(got.values, expected.values, atol=1e-5, rtol=1e-5)
    assert got.target_value == pytest.approx(expected.target_value, abs=1e-5)
    assert (got.values - got.target_value).abs().max() > 1e-3  # the patches did something


def test_patching_across_two_dispatched_models_and_a_probe_metric(
    tiny_model, dispatched_tiny, accelerate_calls
):
    """The other model is dispatched too (source activations come from its layers), and a
    probe metric runs the full-pass path with captures."""
    source, target = _prompts(tiny_model.tokenizer)
    gen = torch.Generator().manual_seed(0)
    probe = LogisticProbe().fit(
        torch.randn(40, tiny_model.d_model, generator=gen), torch.arange(40) % 2
    )
    metric = ProbeScore(probe, "blocks.1.hook_resid_post")

    def run(model):
        return patch_sweep(
            model, target, metric, source=model, source_input=source, sites=SITES, progress=False
        )

    got, expected = _same(dispatched_tiny, tiny_model, run, accelerate_calls)
    torch.testing.assert_close(got.values, expected.values, atol=1e-5, rtol=1e-5)


def _planted_sae(d_in: int):
    from sae_lens import TopKSAE
    from sae_lens.saes.topk_sae import TopKSAEConfig

    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=8, k=2, apply_b_dec_to_input=False))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, 8, generator=gen) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(8, d_in, generator=gen) / d_in**0.5)
    return sae


def test_sae_interventions_and_splice_loss_equal_the_undispatched_model(
    tiny_model, dispatched_tiny, small_dataset, accelerate_calls
):
    sae = _planted_sae(tiny_model.d_model)
    prompts = answer_prompts(tiny_model.tokenizer, small_dataset[:16])[:2]
    transcripts = small_dataset[:3]

    def run(model):
        clean = clean_diffs(model, prompts)
        edited = intervene(model, sae, HOOK, 3, 0.0, prompts, clean)
        loss, _ = reply_loss(
            model, transcripts, hook_factory=lambda m: [(HOOK, splice_hook(sae, m))]
        )
        with torch.inference_mode():
            ids = torch.tensor([[1, 50, 300, 7, 9]])
            logits = model.bridge.run_with_hooks(
                ids.to(model.device), fwd_hooks=[(HOOK, feature_edit_hook(sae, 3, 2.0))]
            )
        return clean, edited, loss, logits

    got, expected = _same(dispatched_tiny, tiny_model, run, accelerate_calls)
    assert got[0] == pytest.approx(expected[0], abs=1e-5)
    assert got[1].per_prompt == pytest.approx(expected[1].per_prompt, abs=1e-5)
    assert got[2] == pytest.approx(expected[2], abs=1e-5)
    torch.testing.assert_close(got[3], expected[3], atol=1e-5, rtol=1e-5)
    assert any(abs(c) > 1e-4 for c in got[1].per_prompt)  # the ablation changed something
