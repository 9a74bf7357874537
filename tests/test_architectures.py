"""Every tiny architecture (``tiny-random-<arch>``) through the toolkit: the bridge's residual
hooks equal Hugging Face hidden states, caching with an early stop equals a full run, and the
probe pipeline, a patching sweep (against ``transformer_lens.patching``) and SAE training run.
An architecture the bridge has no adapter for is refused by ``load_model`` with a ModelError.

Results and versions: docs/architectures.md.
"""

from __future__ import annotations

import math

import pytest
import torch
import transformer_lens.patching as tl_patching

from interp.cache import cache_activations
from interp.data.tokens import encode_transcript
from interp.data.transcripts import write_transcripts
from interp.hooks import hook_name
from interp.models import (
    MODEL_BUILDERS,
    LoadedModel,
    ModelError,
    build_tiny,
    load_model,
    register_model,
)
from interp.models.tiny import CONFIGS, SLIDING_WINDOW
from interp.patching import LogProbDiff, PatchInput, patch_sweep
from interp.probe import ProbeConfig, train_probe
from interp.sae import SAEConfig, train_sae

ARCHS = list(CONFIGS)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def loaded() -> dict[str, LoadedModel]:
    """Models booted once for the module, by architecture (filled on first use)."""
    return {}


def _model(loaded: dict[str, LoadedModel], arch: str) -> LoadedModel:
    if arch not in loaded:
        loaded[arch] = load_model(f"tiny-random-{arch}", device="cpu")
    return loaded[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_residual_hooks_equal_hf_hidden_states(loaded, arch):
    model = _model(loaded, arch)
    plain, tokenizer = build_tiny(arch)  # same seed, same weights; booting rewired the other
    plain.eval()
    # longer than the Gemma models' sliding window, so the window is exercised
    ids = tokenizer(
        "Please sell the old car today, and tell me what the window costs.", return_tensors="pt"
    ).input_ids
    assert ids.shape[1] > SLIDING_WINDOW
    with torch.inference_mode():
        hidden = plain(ids, output_hidden_states=True).hidden_states
        logits, cache = model.bridge.run_with_cache(ids)
        plain_logits = plain(ids).logits
    assert model.n_layers == len(hidden) - 1 == 2
    for layer in range(model.n_layers):
        pre = cache[hook_name(layer, "resid_pre")]
        torch.testing.assert_close(pre, hidden[layer], atol=TOLERANCE, rtol=0)
        if layer < model.n_layers - 1:  # HF applies the final norm to the last hidden state
            post = cache[hook_name(layer, "resid_post")]
            torch.testing.assert_close(post, hidden[layer + 1], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(logits, plain_logits, atol=TOLERANCE, rtol=0)
    assert (hidden[1] - hidden[0]).abs().max() > 1e-3  # the block did something


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_with_early_stop_equals_full_run(loaded, arch, small_dataset, tmp_path):
    """Layer 0 cached in left-padded batches (the pass stops after block 0) equals the same
    hook of a full, unpadded run, per transcript."""
    model = _model(loaded, arch)
    sample = small_dataset[:4]
    hook = hook_name(0)
    acts = cache_activations(
        model, sample, [hook], cache_dir=tmp_path, batch_size=4, progress=False
    )
    for i, transcript in enumerate(sample):
        enc = encode_transcript(model.tokenizer, transcript, "answer", 1024)
        with torch.inference_mode():
            _, full = model.bridge.run_with_cache(
                torch.tensor([enc.input_ids]), names_filter=[hook]
            )
        expected = full[hook][0, enc.selected].mean(0)
        torch.testing.assert_close(acts[hook][i], expected, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("arch", ARCHS)
def test_loading_only_the_first_block_gives_the_full_models_activations(loaded, arch, tmp_path):
    """``max_layer=0`` keeps block 0 only (config override, per-layer lists such as Gemma's and
    Qwen's ``layer_types`` cut), for a model built in memory and for a checkpoint folder (whose
    later blocks are never read); its residual stream at block 0, on a left-padded batch
    longer than the sliding window, equals the full model's."""
    full = _model(loaded, arch)
    plain, tokenizer = build_tiny(arch)
    plain.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    texts = ["Please sell the old car today, and tell me what the window costs.", "Hi there."]
    batch = full.tokenizer(texts, return_tensors="pt", padding=True)
    assert batch.input_ids.shape[1] > SLIDING_WINDOW
    hooks = [hook_name(0, site) for site in ("resid_pre", "resid_mid", "resid_post")]
    with torch.inference_mode():
        _, want = full.bridge.run_with_cache(
            batch.input_ids, attention_mask=batch.attention_mask, names_filter=hooks
        )
    for spec in (f"tiny-random-{arch}", str(tmp_path)):
        cut = load_model(spec, device="cpu", max_layer=0)
        assert (cut.n_layers, cut.checkpoint_layers) == (1, 2)
        layer_types = getattr(cut.bridge.original_model.config, "layer_types", None)
        assert layer_types is None or len(layer_types) == 1
        with torch.inference_mode():
            _, got = cut.bridge.run_with_cache(
                batch.input_ids, attention_mask=batch.attention_mask, names_filter=hooks
            )
        for h in hooks:
            torch.testing.assert_close(got[h], want[h], atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_probe_pipeline_runs(loaded, arch, tmp_path):
    config = ProbeConfig(
        model=f"tiny-random-{arch}",
        layers=(0,),  # the pass stops after block 0: the 49k-token unembedding never runs
        max_scenarios=4,
        n_random=4,
        max_tokens=64,
        progress=False,
        cache_dir=str(tmp_path),
        out=str(tmp_path / "run"),
    )
    run = train_probe(config, _model(loaded, arch))
    assert [r.layer for r in run.layers] == [0]
    assert (tmp_path / "run" / "metrics.json").is_file()


PROMPT = "Please {} the old car today."
SITES_IN_TL = {
    "resid_pre": tl_patching.get_act_patch_resid_pre,
}


@pytest.mark.parametrize("arch", ARCHS)
def test_patch_sweep_equals_transformer_lens_patching(loaded, arch, tl_metric_of):
    model = _model(loaded, arch)
    tok = model.tokenizer
    # longer than the Gemma models' sliding window: their two layers get different masks
    source = PatchInput(tok(PROMPT.format("sell"), return_tensors="pt").input_ids[0])
    target = PatchInput(tok(PROMPT.format("hide"), return_tensors="pt").input_ids[0])
    assert len(source) == len(target) > SLIDING_WINDOW
    metric = LogProbDiff.from_text(tok, "Sure", "No")
    tl_metric = tl_metric_of(metric)

    ours = patch_sweep(
        model, target, metric, source_input=source, sites=tuple(SITES_IN_TL), progress=False
    )
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(source.tokens[None])
        for site, tl_fn in SITES_IN_TL.items():
            reference = tl_fn(model.bridge, target.tokens[None], cache, tl_metric)
            torch.testing.assert_close(ours.site(site), reference.cpu(), atol=1e-5, rtol=1e-4)
    assert (ours.values - ours.target_value).abs().max() > 1e-4  # the patches changed something


@pytest.mark.parametrize("arch", ARCHS)
def test_sae_trains(loaded, arch, small_dataset, tmp_path):
    data = tmp_path / "small.jsonl"
    write_transcripts(data, small_dataset)
    config = SAEConfig(
        model=f"tiny-random-{arch}",
        layer=0,
        d_sae=64,
        k=4,
        training_tokens=1024,
        lr=1e-2,
        batch_size=128,
        buffer_tokens=512,
        datasets=(str(data),),
        eval_transcripts=2,
        name=f"tiny-{arch}",
        cache_dir=str(tmp_path),
        progress=False,
    )
    sae = train_sae(config, _model(loaded, arch))
    quality = sae.manifest.quality
    assert sae.sae.cfg.d_in == 64
    assert quality["heldout"]["l0"] <= config.k + 1e-6
    assert math.isfinite(quality["heldout"]["mse"])


def _unsupported(dtype: torch.dtype):
    """A tiny Persimmon model: transformers has it, the bridge has no adapter for it."""
    from transformers import PersimmonConfig, PersimmonForCausalLM

    from interp.models import smollm2_tokenizer

    tokenizer = smollm2_tokenizer()
    config = PersimmonConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
    )
    return PersimmonForCausalLM(config).to(dtype), tokenizer


def test_unsupported_architecture_is_refused_before_booting(monkeypatch):
    from importlib.metadata import version

    from transformer_lens.model_bridge import TransformerBridge

    if "tiny-random-persimmon" not in MODEL_BUILDERS:
        register_model("tiny-random-persimmon", _unsupported)

    def boot(*args, **kwargs):
        raise AssertionError("booted an unsupported architecture")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", boot)
    with pytest.raises(ModelError) as error:
        load_model("tiny-random-persimmon", device="cpu")
    message = str(error.value)
    assert "PersimmonForCausalLM" in message
    assert f"transformer-lens {version('transformer-lens')}" in message
    assert "docs/architectures.md" in message
