"""Loading models at scale: dtype, device maps (dispatched models), loading only the blocks a
run needs, and the checkpoint fingerprint.

A real split needs several GPUs; here the dispatched path runs on a model split module by
module over the CPU with accelerate's hooks forced on (the ``dispatched_tiny`` fixture), as
the design notes record for transformer-lens 3.9: its cached activations must equal the
undispatched model's.
"""

from __future__ import annotations

import json
import logging
import struct
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import interp.models.checkpoints as checkpoints
import interp.models.placement as placement
from interp.cache import cache_activations
from interp.config import ConfigError, check_model_options, model_options, parse_max_memory
from interp.hooks import HookError, hook_name
from interp.models import LoadedModel, build_tiny, build_tiny_random, load_model
from interp.models.checkpoints import checkpoint_fingerprint, cut_config, kept_blocks
from interp.models.placement import Placement, PlacementError, plan_device_map, refuse_offload
from interp.probe.results import MODEL_DTYPE, ModelDtypeWarning, check_model_dtype
from interp.probe.score import score_transcripts
from probes import LogisticProbe, Probe, ProbeMeta

TEXT = "Reasoning: the buyer deserves the truth.\nAnswer: I will tell them about the flood."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny model saved as a checkpoint folder (config, safetensors, tokenizer)."""
    folder = tmp_path_factory.mktemp("tiny-checkpoint")
    model, tokenizer = build_tiny_random()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _resid(model: LoadedModel, layer: int) -> torch.Tensor:
    ids = model.tokenizer(TEXT, return_tensors="pt").input_ids.to(model.device)
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(ids, names_filter=[hook_name(layer)])
    return cache[hook_name(layer)].float().cpu()


# --- dispatched models --------------------------------------------------------------------


def test_the_dispatched_tiny_model_runs_through_accelerate_hooks(dispatched_tiny, tiny_model):
    blocks = dispatched_tiny.bridge.original_model.model.layers
    assert all(hasattr(block, "_hf_hook") for block in blocks)
    assert dispatched_tiny.device_map is not None and len(dispatched_tiny.device_map) >= 5
    assert dispatched_tiny.device == torch.device("cpu")  # the embedding's device
    assert dispatched_tiny.fingerprint == tiny_model.fingerprint
    assert tiny_model.device_map is None


@pytest.mark.parametrize("layers", [(0,), (0, 1)], ids=["stop-at-layer-1", "whole-model"])
def test_caching_a_dispatched_model_equals_the_undispatched_one(
    layers, dispatched_tiny, tiny_model, small_dataset, tmp_path, monkeypatch
):
    from accelerate.hooks import AlignDevicesHook

    calls = {"n": 0}
    pre_forward = AlignDevicesHook.pre_forward

    def counted(self, module, *args, **kwargs):
        calls["n"] += 1
        return pre_forward(self, module, *args, **kwargs)

    monkeypatch.setattr(AlignDevicesHook, "pre_forward", counted)
    hooks = [hook_name(layer) for layer in layers]
    data = small_dataset[:8]
    kwargs = {"tokens": "answer", "per_token": True, "progress": False, "batch_size": 3}
    plain = cache_activations(tiny_model, data, hooks, cache_dir=tmp_path / "a", **kwargs)
    assert calls["n"] == 0
    split = cache_activations(dispatched_tiny, data, hooks, cache_dir=tmp_path / "b", **kwargs)
    assert calls["n"] > 0  # the pass went through accelerate's hooks
    for h in hooks:
        torch.testing.assert_close(split[h], plain[h], rtol=0, atol=1e-6)
        for a, b in zip(split.per_token(h), plain.per_token(h), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# --- options checked before loading -------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without GPU")
def test_a_device_map_without_cuda_is_refused_before_anything_loads(monkeypatch):
    def never(spec):
        raise AssertionError("the model was looked up before the options were checked")

    monkeypatch.setattr("interp.models.load.locate", never)
    with pytest.raises(PlacementError, match=r"torch sees none; drop --device-map .*--device cpu"):
        load_model("tiny-random", device_map="auto")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "fp8"}, r"unknown dtype 'fp8'; choose one of auto, float32"),
        ({"max_memory": "0=1GiB"}, r"max_memory is a per-GPU budget for device_map"),
        ({"device_map": "auto", "device": "cpu"}, r"device 'cpu' cannot be honoured"),
        ({"device_map": "everywhere"}, r"unknown device_map 'everywhere'"),
    ],
)
def test_bad_loading_options_are_refused(kwargs, message):
    with pytest.raises(PlacementError, match=message):
        load_model("tiny-random", **{"device": "auto", **kwargs})


def test_auto_dtype_is_float32_on_cpu_and_bfloat16_on_a_gpu_that_has_it(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert placement.resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(placement, "_bf16_supported", lambda device: True)
    assert placement.resolve_dtype("auto", gpu) == torch.bfloat16
    monkeypatch.setattr(placement, "_bf16_supported", lambda device: False)
    assert placement.resolve_dtype("auto", gpu) == torch.float32
    with pytest.raises(PlacementError, match=r"cannot compute in bfloat16; use --dtype float16"):
        placement.resolve_dtype("bfloat16", gpu)


def test_a_plan_that_offloads_is_refused_naming_the_modules_and_the_fix():
    where = Placement(torch.device("cuda", 0), torch.bfloat16, "auto", {0: 10**9, 1: 10**9})
    refuse_offload({"model.embed_tokens": 0, "model.layers.0": 0, "lm_head": 1}, where)
    plan = {
        "model.embed_tokens": 0,
        "model.layers.0": 1,
        "model.layers.1": "cpu",
        "lm_head": "disk",
    }
    with pytest.raises(PlacementError) as err:
        refuse_offload(plan, where)
    text = str(err.value)
    assert "model.layers.1, lm_head" in text and "model.layers.0" not in text
    assert "--max-memory" in text and "bfloat16" in text and "TransformerBridge" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the plan fits")
def test_planning_reads_no_weight_and_refuses_a_model_that_does_not_fit():
    model, _ = build_tiny_random()
    where = Placement(torch.device("cuda", 0), torch.float32, "auto", {0: 10**6})
    with pytest.raises(PlacementError, match=r"would offload \(the whole model\)"):
        plan_device_map(model.config, where)


def test_max_memory_is_read_per_device():
    assert parse_max_memory("0=70GiB, 1=1.5GB,cpu=0") == {0: 70 * 2**30, 1: 15 * 10**8, "cpu": 0}
    for bad, message in [
        ("0=70GiB,1", r"cannot read max_memory .* at '1'"),
        ("gpu0=1GB", r"cannot read max_memory"),
        ("0=lots", r"cannot read max_memory"),
        ("0=1GB,disk=9TB", r"disk budget.*cannot run under the TransformerBridge"),
        ("cpu=10GB", r"gives no GPU a budget"),
        ("0=1GB,0=2GB", r"names device 0 twice"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_max_memory(bad)


def test_configs_share_the_options_and_hand_them_to_load_model():
    from interp.finetune.weight_diff_report import WeightDiffConfig
    from interp.organism.config import OrganismConfig
    from interp.probe.config import ProbeConfig
    from interp.probe.generations import ProbeGenerationsConfig
    from interp.sae.config import SAEConfig
    from interp.text.followup import FollowUpConfig
    from interp.text.judge import JudgeConfig
    from interp.text.reference_set import ReferenceSetConfig

    makers = [
        lambda **kw: ProbeConfig(**kw),
        lambda **kw: SAEConfig(**kw),
        lambda **kw: FollowUpConfig(**kw),
        lambda **kw: ReferenceSetConfig(**kw),
        lambda **kw: JudgeConfig(input="x.jsonl", **kw),
        lambda **kw: WeightDiffConfig(variant=("v",), **kw),
        lambda **kw: ProbeGenerationsConfig(run="r", layer=3, **kw),
        lambda **kw: OrganismConfig(**kw),
    ]
    for make in makers:
        config = make(device="auto", dtype="bfloat16", device_map="auto", max_memory="0=10GiB")
        assert model_options(config) == {
            "device": "auto",
            "dtype": "bfloat16",
            "device_map": "auto",
            "max_memory": "0=10GiB",
        }
        with pytest.raises(ConfigError, match=r"unknown dtype 'half'"):
            make(dtype="half")
        with pytest.raises(ConfigError, match=r"max_memory is a per-GPU budget"):
            make(max_memory="0=10GiB")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a machine without GPUs")
def test_the_organism_takes_device_map_and_a_cpu_machine_refuses_it(tmp_path, capsys):
    """``experiments/organism.py --device-map auto`` reaches the loader, which refuses it
    on a machine without CUDA GPUs with the message every other command gives."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "experiments" / "organism.py"
    main = runpy.run_path(str(script), run_name="not_main")["main"]
    assert main(["--device-map", "auto", "--quick", "--no-progress", "--out", str(tmp_path)]) == 2
    assert "torch sees none; drop --device-map" in capsys.readouterr().err


def test_check_model_options_refuses_a_device_map_with_another_device():
    class Options:
        device, dtype, device_map, max_memory = "cuda:1", "auto", "balanced", None

    with pytest.raises(ConfigError, match=r"device 'cuda:1' cannot be honoured"):
        check_model_options(Options())


# --- dtype ----------------------------------------------------------------------------------


def test_a_bfloat16_load_keeps_the_fingerprint_and_runs_in_bfloat16(tiny_model):
    half = load_model("tiny-random", device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.dtype_name == "bfloat16"
    assert {p.dtype for p in half.bridge.original_model.parameters()} == {torch.bfloat16}
    assert half.fingerprint == tiny_model.fingerprint  # the checkpoint's, not the load's
    ids = half.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        _, cache = half.bridge.run_with_cache(ids, names_filter=[hook_name(1)])
    assert cache[hook_name(1)].dtype == torch.bfloat16
    torch.testing.assert_close(
        cache[hook_name(1)].float(), _resid(tiny_model, 1), rtol=0.05, atol=0.05
    )


def test_a_probe_applied_in_another_dtype_warns(tiny_model, small_dataset, tmp_path):
    hook = hook_name(1)
    meta = ProbeMeta(tiny_model.name, tiny_model.fingerprint, hook, "answer")
    meta.extra[MODEL_DTYPE] = "float32"
    probe = LogisticProbe(meta=meta, c=1.0).fit(
        torch.randn(20, tiny_model.d_model), torch.tensor([0, 1] * 10)
    )
    probe = Probe.load(probe.save(tmp_path / "probe"))  # the dtype travels with the probe
    assert probe.meta.extra[MODEL_DTYPE] == "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelDtypeWarning)
        check_model_dtype(probe, "float32")
        score_transcripts(tiny_model, probe, small_dataset[:4], cache_dir=tmp_path / "f32")
    half = load_model("tiny-random", device="cpu", dtype="bfloat16")
    with pytest.warns(ModelDtypeWarning, match=r"trained on .* in float32 .* in bfloat16.*--dtype"):
        scores = score_transcripts(half, probe, small_dataset[:4], cache_dir=tmp_path / "bf16")
    assert scores.dtype == torch.float32 and scores.shape == (4,)
    del probe.meta.extra[MODEL_DTYPE]  # a probe saved before the dtype was recorded
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelDtypeWarning)
        check_model_dtype(probe, "bfloat16")


# --- loading only the blocks a run needs --------------------------------------------------


def test_a_truncated_load_equals_the_full_model_up_to_its_last_block(tiny_model):
    cut = load_model("tiny-random", device="cpu", max_layer=0)
    assert (cut.n_layers, cut.checkpoint_layers, cut.truncated) == (1, 2, True)
    assert not tiny_model.truncated and tiny_model.has_logits and not cut.has_logits
    assert cut.fingerprint == tiny_model.fingerprint
    assert torch.equal(_resid(cut, 0), _resid(tiny_model, 0))
    ids = cut.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        assert cut.bridge(ids).shape[-1] == 0  # no unembedding: its logits would mean nothing
    with pytest.raises(
        HookError, match=r"layer 1 was not loaded: .*blocks 0 to 0 only .*max_layer >= 1"
    ):
        cut.check_layer(1)
    with pytest.raises(HookError, match=r"layer 5 is out of range: this model has 2 blocks"):
        cut.check_layer(5)


def test_reading_the_last_block_skips_the_unembedding(tiny_model):
    """``max_layer`` at the last block keeps every block but no logits: the pass (which the
    bridge cannot stop after its last block) ends at the final norm."""
    last = load_model("tiny-random", device="cpu", max_layer=1)
    assert (last.n_layers, last.truncated, last.has_logits) == (2, False, False)
    head = last.bridge.original_model.get_output_embeddings()
    assert head.weight.numel() == 0
    assert torch.equal(_resid(last, 1), _resid(tiny_model, 1))


def test_a_truncated_checkpoint_reads_only_the_kept_blocks(checkpoint, caplog):
    full = load_model(str(checkpoint), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing or unexpected weight beyond the cut ones
        with caplog.at_level(logging.WARNING):
            cut = load_model(str(checkpoint), device="cpu", max_layer=0)
    assert "LOAD REPORT" not in caplog.text
    assert cut.bridge.original_model.config.num_hidden_layers == 1
    assert len(cut.bridge.original_model.model.layers) == 1
    assert torch.equal(_resid(cut, 0), _resid(full, 0))
    assert cut.fingerprint == full.fingerprint


def test_truncated_caches_equal_full_ones(tiny_model, small_dataset, tmp_path):
    cut = load_model("tiny-random", device="cpu", max_layer=0)
    hooks, data = [hook_name(0)], small_dataset[:6]
    a = cache_activations(tiny_model, data, hooks, cache_dir=tmp_path / "a", progress=False)
    b = cache_activations(cut, data, hooks, cache_dir=tmp_path / "b", progress=False)
    torch.testing.assert_close(a[hooks[0]], b[hooks[0]], rtol=0, atol=1e-6)
    # the kept block count is part of the key: the two never share a folder
    assert (a.key.model_blocks, b.key.model_blocks) == (2, 1)
    assert a.key.model_fingerprint == b.key.model_fingerprint
    assert a.key.digest() != b.key.digest()


def test_kept_blocks_and_config_cut():
    assert kept_blocks(30, None) == 30 and kept_blocks(30, 14) == 15 and kept_blocks(30, 99) == 30
    model, _ = build_tiny("gemma2")
    config = cut_config(model.config, 1)
    assert config is model.config  # in place: the model's modules share it
    assert (config.num_hidden_layers, config.layer_types) == (1, ["sliding_attention"])
    from transformers import LlamaConfig

    smol3_like = LlamaConfig(num_hidden_layers=4)
    smol3_like.no_rope_layers = [1, 1, 1, 0]
    assert cut_config(smol3_like, 2).no_rope_layers == [1, 1]


# --- the checkpoint fingerprint ----------------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _scale(folder: Path, name: str, factor: float) -> None:
    tensors = load_file(folder / "model.safetensors")
    tensors[name] = tensors[name] * factor
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_the_fingerprint_of_a_small_checkpoint_covers_every_byte(checkpoint, tmp_path):
    same = _copy(checkpoint, tmp_path / "same")
    assert checkpoint_fingerprint(same) == checkpoint_fingerprint(checkpoint)
    changed = _copy(checkpoint, tmp_path / "changed")
    tensors = load_file(changed / "model.safetensors")
    tensors["model.norm.weight"][3] += 1e-3
    save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
    assert checkpoint_fingerprint(changed) != checkpoint_fingerprint(checkpoint)
    config = _copy(checkpoint, tmp_path / "config")
    raw = json.loads((config / "config.json").read_text())
    (config / "config.json").write_text(json.dumps({**raw, "rms_norm_eps": 1e-6}))
    assert checkpoint_fingerprint(config) != checkpoint_fingerprint(checkpoint)


def test_a_large_checkpoint_is_fingerprinted_without_reading_it_whole(
    checkpoint, tmp_path, monkeypatch
):
    def whole_file(path):
        raise AssertionError(f"{path} was read whole")

    monkeypatch.setattr(checkpoints, "FULL_HASH_LIMIT", 0)
    monkeypatch.setattr(checkpoints, "file_blake2b", whole_file)
    base = checkpoint_fingerprint(checkpoint)
    assert checkpoint_fingerprint(_copy(checkpoint, tmp_path / "same")) == base
    tuned = _copy(checkpoint, tmp_path / "tuned")
    _scale(tuned, "model.embed_tokens.weight", 1.01)  # a fine-tune changes whole matrices
    assert checkpoint_fingerprint(tuned) != base
    # a 20 GB checkpoint (a sparse file: a valid header, then zeros) takes no time
    big = tmp_path / "big"
    big.mkdir()
    (big / "config.json").write_text("{}")
    header = json.dumps(
        {"w": {"dtype": "BF16", "shape": [10**10], "data_offsets": [0, 2 * 10**10]}}
    )
    path = big / "model.safetensors"
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header.encode())
        handle.truncate(8 + len(header) + 2 * 10**10)
    assert len(checkpoint_fingerprint(big)) == 24
