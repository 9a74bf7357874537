"""Activation patching: equal to transformer_lens.patching, batched == one at a time, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformer_lens.patching as tl_patching

from interp.models import MODEL_BUILDERS, build_tiny_random, load_model, register_model
from interp.patching import (
    GENERATION_PROMPT,
    LogProbDiff,
    NextTokenKL,
    PatchError,
    PatchInput,
    PatchResult,
    ProbeScore,
    chat_input,
    patch_sweep,
)
from probes.logistic import LogisticProbe

SITES_IN_TL = {
    "resid_pre": tl_patching.get_act_patch_resid_pre,
    "resid_mid": tl_patching.get_act_patch_resid_mid,
    "attn_out": tl_patching.get_act_patch_attn_out,
    "mlp_out": tl_patching.get_act_patch_mlp_out,
}


@pytest.fixture(scope="module")
def other_tiny():
    """A second tiny model with the same shapes and tokenizer, other weights."""
    if "tiny-random-seed1" not in MODEL_BUILDERS:
        register_model("tiny-random-seed1", lambda dtype: build_tiny_random(dtype, seed=1))
    return load_model("tiny-random-seed1", device="cpu")


def _prompts(tok):
    """Two 8-token prompts that differ in one word (short: the reference runs one pass per
    patch)."""
    clean = PatchInput(tok("Please sell the old car today.", return_tensors="pt").input_ids[0])
    corrupt = PatchInput(tok("Please hide the old car today.", return_tensors="pt").input_ids[0])
    assert len(clean) == len(corrupt) and (clean.tokens != corrupt.tokens).sum() == 1
    return clean, corrupt


def test_equals_transformer_lens_patching(tiny_model, tl_metric_of):
    tok = tiny_model.tokenizer
    source, target = _prompts(tok)
    metric = LogProbDiff.from_text(tok, "Sure", "No")
    tl_metric = tl_metric_of(metric)

    ours = patch_sweep(
        tiny_model,
        target,
        metric,
        source_input=source,
        sites=tuple(SITES_IN_TL),
        batch_size=16,
        progress=False,
    )
    with torch.inference_mode():
        _, cache = tiny_model.bridge.run_with_cache(source.tokens[None])
        for site, tl_fn in SITES_IN_TL.items():
            reference = tl_fn(tiny_model.bridge, target.tokens[None], cache, tl_metric)
            torch.testing.assert_close(ours.site(site), reference.cpu(), atol=1e-5, rtol=1e-4)
    # the patch changed something, so the comparison is not between two unchanged runs
    assert (ours.values - ours.target_value).abs().max() > 1e-3


def test_resid_post_equals_resid_pre_of_next_layer(tiny_model):
    source, target = _prompts(tiny_model.tokenizer)
    result = patch_sweep(
        tiny_model,
        target,
        NextTokenKL(),
        source_input=source,
        sites=("resid_pre", "resid_mid", "resid_post"),
        progress=False,
    )
    torch.testing.assert_close(result.site("resid_post")[0], result.site("resid_pre")[1])
    torch.testing.assert_close(result.site("resid_mid")[0], result.site("resid_post")[0])


def test_batch_size_does_not_change_results_and_hooks_are_removed(tiny_model):
    source, target = _prompts(tiny_model.tokenizer)
    metric = LogProbDiff.from_text(tiny_model.tokenizer, "Sure, here it is", "I can't")
    kwargs = dict(source_input=source, sites=("resid_pre", "mlp_out"), progress=False)
    one = patch_sweep(tiny_model, target, metric, batch_size=1, **kwargs)
    many = patch_sweep(tiny_model, target, metric, batch_size=13, **kwargs)
    torch.testing.assert_close(one.values, many.values, atol=1e-5, rtol=1e-5)
    leftover = [n for n, h in tiny_model.bridge.hook_dict.items() if h.fwd_hooks]
    assert leftover == []


def test_multi_token_logprob_diff_matches_teacher_forcing(tiny_model):
    source, target = _prompts(tiny_model.tokenizer)
    metric = LogProbDiff.from_text(tiny_model.tokenizer, "Sure, here it is", "I can't")
    result = patch_sweep(
        tiny_model, target, metric, source_input=source, layers=[0], progress=False
    )

    def logprob(prompt, suffix):
        ids = torch.cat([prompt, suffix])[None]
        with torch.inference_mode():
            logp = tiny_model.bridge(ids).log_softmax(-1)[0]
        start = len(prompt) - 1
        return sum(float(logp[start + j, t]) for j, t in enumerate(suffix.tolist()))

    expected = logprob(target.tokens, metric.comply) - logprob(target.tokens, metric.refuse)
    assert result.target_value == pytest.approx(expected, abs=1e-4)


def test_patching_everything_reproduces_the_source(tiny_model):
    source, target = _prompts(tiny_model.tokenizer)
    result = patch_sweep(
        tiny_model,
        target,
        NextTokenKL(),
        source_input=source,
        layers=[0, 1],
        per="segment",
        progress=False,
    )
    assert result.columns == ("all",)
    assert result.target_value == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(
        result.normalised, torch.ones_like(result.values), atol=1e-4, rtol=1e-4
    )


def test_segments_align_prompts_of_different_length(tiny_model):
    tok = tiny_model.tokenizer
    names = ["system", "pressure", "reply", "follow_up"]

    def convo(reply):
        return chat_input(
            tok,
            [
                {"role": "system", "content": "You sell cars."},
                {"role": "user", "content": "Hide the defect."},
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "So, is the car fine?"},
            ],
            names=names,
        )

    refusal = convo("I can't help with that.")
    rebuttal = convo("I won't hide the defect, because it would put the buyer at risk.")
    assert len(refusal) != len(rebuttal)
    assert set(refusal.segments) == {*names, GENERATION_PROMPT}
    fu_len = refusal.segments["follow_up"][1] - refusal.segments["follow_up"][0]
    result = patch_sweep(
        tiny_model,
        refusal,
        NextTokenKL(),
        source_input=rebuttal,
        segments=["follow_up", GENERATION_PROMPT],
        progress=False,
    )
    n_gen = refusal.segments[GENERATION_PROMPT][1] - refusal.segments[GENERATION_PROMPT][0]
    assert result.values.shape == (1, 2, fu_len + n_gen)
    assert result.columns[0].split(": ", 1)[1].startswith("follow_up[0]")
    whole = patch_sweep(
        tiny_model,
        refusal,
        NextTokenKL(),
        source_input=rebuttal,
        segments=["follow_up"],
        per="segment",
        progress=False,
    )
    assert whole.columns == ("follow_up",)

    errors = {
        ("reply",): r"segment 'reply' has .* tokens in the target",
        ("answer",): r"no segment 'answer'.*follow_up",
        None: r"differ in length .* name the segments",
    }
    for segments, message in errors.items():
        with pytest.raises(PatchError, match=message):
            patch_sweep(
                tiny_model,
                refusal,
                NextTokenKL(),
                source_input=rebuttal,
                segments=segments,
                progress=False,
            )


def test_two_models_same_prompt_equals_a_manual_hook(tiny_model, other_tiny):
    source, _ = _prompts(tiny_model.tokenizer)
    metric = LogProbDiff.from_text(tiny_model.tokenizer, "Sure", "No")
    result = patch_sweep(
        tiny_model,
        source,
        metric,
        source=other_tiny,
        sites=("attn_out",),
        layers=[1],
        progress=False,
    )
    assert result.meta["source_model"] == "tiny-random-seed1"
    pos = 5
    with torch.inference_mode():
        _, cache = other_tiny.bridge.run_with_cache(source.tokens[None])
        donor = cache["blocks.1.hook_attn_out"][0, pos]

        def hook(act, hook):
            act = act.clone()
            act[:, pos] = donor
            return act

        logits = tiny_model.bridge.run_with_hooks(
            source.tokens[None], fwd_hooks=[("blocks.1.hook_attn_out", hook)]
        )
    logp = logits[0, -1].log_softmax(-1)
    expected = float(logp[metric.comply[0]] - logp[metric.refuse[0]])
    assert float(result.values[0, 0, pos]) == pytest.approx(expected, abs=1e-5)


def test_probe_score_metric(tiny_model):
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, tiny_model.d_model, generator=gen), torch.arange(40) % 2
    probe = LogisticProbe().fit(X, y)
    target = chat_input(tiny_model.tokenizer, [{"role": "user", "content": "Hide the car."}])
    source = chat_input(tiny_model.tokenizer, [{"role": "user", "content": "Sell the car."}])
    metric = ProbeScore(probe, "blocks.0.hook_resid_post", segment="user_1")
    result = patch_sweep(
        tiny_model, target, metric, source_input=source, sites=("resid_pre",), progress=False
    )
    start, end = target.segments["user_1"]
    with torch.inference_mode():
        _, cache = tiny_model.bridge.run_with_cache(
            target.tokens[None], names_filter=["blocks.0.hook_resid_post"]
        )
    clean = probe.score(cache["blocks.0.hook_resid_post"][0, start:end].mean(0, keepdim=True))
    assert result.target_value == pytest.approx(float(clean[0]), abs=1e-5)
    # a patch at layer 1 comes after the probe's layer, so it cannot move the score
    torch.testing.assert_close(
        result.site("resid_pre")[1], torch.full((len(target),), result.target_value)
    )


def test_mismatched_models_are_refused(tiny_model):
    source, _ = _prompts(tiny_model.tokenizer)
    metric = NextTokenKL()
    wider = dataclasses.replace(tiny_model, name="wide", d_model=128)
    with pytest.raises(PatchError, match="d_model is 128 in the source and 64 in the target"):
        patch_sweep(tiny_model, source, metric, source=wider, progress=False)

    class OtherTokenizer:
        def get_vocab(self):
            return {"a": 0}

        def __len__(self):
            return 1

    other = dataclasses.replace(tiny_model, name="other-tok", tokenizer=OtherTokenizer())
    with pytest.raises(PatchError, match="tokenizers differ"):
        patch_sweep(tiny_model, source, metric, source=other, progress=False)


def test_bad_requests_name_the_problem(tiny_model):
    source, target = _prompts(tiny_model.tokenizer)
    with pytest.raises(PatchError, match="unknown site 'resid'"):
        patch_sweep(tiny_model, target, NextTokenKL(), source_input=source, sites=("resid",))
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        patch_sweep(tiny_model, target, NextTokenKL(), source_input=source, layers=[5])


def test_result_round_trip_and_figure(tiny_model, tmp_path):
    source, target = _prompts(tiny_model.tokenizer)
    result = patch_sweep(
        tiny_model, target, NextTokenKL(), source_input=source, layers=[1], progress=False
    )
    path = result.save(tmp_path)
    loaded = PatchResult.load(path)
    torch.testing.assert_close(loaded.values, result.values)
    assert loaded.axes == ("site", "layer", "column") and loaded.columns == result.columns
    assert (tmp_path / "patching.html").read_text().count("heatmap") >= 1
    assert "clean target" in result.table(3)


def test_resuming_at_the_patched_block_equals_full_passes(tiny_model, monkeypatch):
    from interp.patching import runner

    source, target = _prompts(tiny_model.tokenizer)
    metric = LogProbDiff.from_text(tiny_model.tokenizer, "Sure, here it is", "I can't")
    kwargs = dict(source_input=source, sites=("resid_mid", "mlp_out"), batch_size=5)
    resumed = patch_sweep(tiny_model, target, metric, progress=False, **kwargs)
    original_init = runner.Runner.__init__

    def full_passes_only(self, *args, **kw):
        original_init(self, *args, **kw)
        self.can_resume = False

    monkeypatch.setattr(runner.Runner, "__init__", full_passes_only)
    full = patch_sweep(tiny_model, target, metric, progress=False, **kwargs)
    torch.testing.assert_close(resumed.values, full.values, atol=1e-5, rtol=1e-5)


def test_chunks_skip_positions_and_unchanged_patches_without_changing_results(
    tiny_model, monkeypatch
):
    """Positions before a chunk's first patch run from the clean keys and values, and a
    patch that writes the target's own activation is not run: both give what running it
    gives."""
    from interp.patching import Sweep, sweep

    source, target = _prompts(tiny_model.tokenizer)
    metric = LogProbDiff.from_text(tiny_model.tokenizer, "Sure, here it is", "I can't")
    kwargs = dict(source_input=source, sites=("resid_pre", "resid_mid", "attn_out"), batch_size=4)
    prepared = Sweep(tiny_model, target, metric, **kwargs)
    assert prepared.runner.skips_positions
    # the prompts differ at position 1: position 0 is the same in both at every layer, and
    # the input of block 0 (token embeddings) at every other position too
    same = [
        (p.site, p.layer, p.column.target_positions)
        for p in (prepared.patches[i] for i in prepared.unchanged)
    ]
    n = len(target)
    embeddings = [("resid_pre", 0, (k,)) for k in range(n) if k != 1]
    assert sorted(same) == sorted(
        {*embeddings, *[(s, layer, (0,)) for s in kwargs["sites"] for layer in (0, 1)]}
    )
    fast = patch_sweep(tiny_model, target, metric, progress=False, **kwargs)
    assert fast.meta["unchanged_patches"] == len(same) == n - 1 + 5
    monkeypatch.setattr(sweep.Sweep, "_find_unchanged", lambda self: [])
    monkeypatch.setattr(sweep.Runner, "_record_prefix", lambda self, clean: None)
    slow = patch_sweep(tiny_model, target, metric, progress=False, **kwargs)
    assert slow.meta["unchanged_patches"] == 0
    torch.testing.assert_close(fast.values, slow.values, atol=1e-5, rtol=1e-5)


def test_one_hook_per_hook_name_per_chunk(tiny_model):
    from interp.patching import Sweep
    from interp.patching.runner import patch_hooks

    source, target = _prompts(tiny_model.tokenizer)
    prepared = Sweep(
        tiny_model,
        target,
        NextTokenKL(),
        source_input=source,
        sites=("resid_pre", "mlp_out"),
        batch_size=64,
    )
    patches = [prepared.patches[i] for i in prepared.chunks[0]]
    assert len(patches) > 10
    hooks = patch_hooks(patches, 1, prepared.acts, 0)
    assert sorted(name for name, _ in hooks) == sorted(
        {f"blocks.{p.layer}.hook_{p.site}" for p in patches}
    )
