"""The GPU check of the scaling work: one command, a few minutes on one GPU.

On a CUDA device, in bfloat16, it runs four measurements and prints one summary table:

1. ``cache_smollm2``: caching layer 14 of the default model (SmolLM2-135M-Instruct) against a
   bare Hugging Face bf16 forward pass over the same batches (``bench_cache_speed.py``):
   tokens/s of each, their ratio, peak GPU memory.
2. ``cache_llama8b_shape``: the same on a random-weight model with the blocks of
   Llama-3-8B (hidden 4,096, 32 heads, 8 key-value heads, MLP 14,336) and 16 blocks, built on
   the GPU in seconds (no download; SmolLM2's tokenizer, so its vocabulary is 49,152 rather
   than Llama-3's 128,256). Layer 7 is cached with ``max_layer``, so only blocks 0-7 are kept.
3. ``probe_auroc``: the probe pipeline at layer 14 on SmolLM2, bf16 on the GPU against
   float32 on the CPU (same data, split and C selection): held-out AUROC of each; they should
   agree within 0.02.
4. ``patching``: the batched patching sweep against ``transformer_lens.patching`` on SmolLM2
   (``bench_patching.py``): the time ratio and the largest difference.

Each measurement's figures come from the benchmark scripts' own JSON; this script only runs
them in turn and gathers what they wrote (into ``--out``, default
``<cache>/benchmarks/gpu_check.json``). A step that fails is reported and the others still
run; then the command ends with an error naming the failed steps (exit status 2). Without
CUDA it prints why it skips and exits 0.
``--device cpu --quick`` runs every step on tiny random models on the CPU: what the tests use
to keep this script working where there is no GPU; its figures mean nothing.

Run: ``python experiments/gpu_check.py`` (on a GPU machine, after the README's install).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.benchmarks import write_result
from interp.cli import run_cli
from interp.config import ConfigError
from interp.models import DEFAULT_MODEL, list_models, register_model

EXPERIMENTS = Path(__file__).resolve().parent
if str(EXPERIMENTS) not in sys.path:  # the sibling benchmark scripts, imported as modules
    sys.path.insert(0, str(EXPERIMENTS))

#: The random model with Llama-3-8B's block shape (see the module docstring).
LLAMA8B_SHAPE = "gpu-check-llama3-8b-shape"
LLAMA8B_BLOCKS = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_attention_heads=32,
    num_key_value_heads=8,
    num_hidden_layers=16,
    max_position_embeddings=8192,
    rope_theta=500000.0,
    tie_word_embeddings=False,
)


@dataclass
class GpuCheckConfig:
    """Run the scaling issue's GPU measurements and print one summary."""

    device: str = field(
        default="cuda",
        metadata={"help": "cuda or cuda:N; cpu only with --quick (a smoke run of the code)"},
    )
    quick: bool = field(
        default=False,
        metadata={"help": "tiny random models and few transcripts (figures mean nothing)"},
    )
    n: int = field(default=512, metadata={"help": "transcripts per caching benchmark"})
    batch_size: int = field(default=64, metadata={"help": "transcripts per forward pass"})
    repeats: int = field(default=3, metadata={"help": "timed repeats (medians reported)"})
    out: str | None = field(
        default=None,
        metadata={"help": "JSON summary", "default_text": "<cache>/benchmarks/gpu_check.json"},
    )


def build_llama8b_shape(dtype: torch.dtype) -> tuple[Any, Any]:
    """The random 16-block model with Llama-3-8B's blocks, built on the GPU when there is
    one (seeded, so every call gives the same weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.models import smollm2_tokenizer

    tokenizer = smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **LLAMA8B_BLOCKS,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model, tokenizer


@dataclass
class Plan:
    """What each step runs: model names, the cached layer and the per-step arguments."""

    small: str
    large: str
    large_layer: int
    n: int
    batch_size: int
    repeats: int

    @classmethod
    def of(cls, config: GpuCheckConfig) -> Plan:
        if config.quick:
            return cls("tiny-random", "tiny-random-llama3", 0, 16, 8, 1)
        return cls(DEFAULT_MODEL, LLAMA8B_SHAPE, 7, config.n, config.batch_size, config.repeats)


def _peak_memory(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def _run_step(name: str, step: Callable[[], dict[str, Any]], device: torch.device) -> dict:
    """One measurement: its figures, peak GPU memory and seconds, or the error it raised."""
    print(f"\n=== {name} ===", flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        figures = step()
    except Exception as err:  # a failed step is reported, the others still run
        traceback.print_exc()
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    return {
        "status": "ok",
        **figures,
        "peak_gpu_gib": _peak_memory(device),
        "seconds": time.perf_counter() - start,
    }


def _bench(module: str, argv: list[str], out: Path) -> dict[str, Any]:
    """Run a sibling benchmark script's ``main`` and return the JSON it wrote to ``out``."""
    bench = __import__(module)
    try:
        status = bench.main([*argv, "--out", str(out)])
    except SystemExit as exit_:  # argparse refused a flag (its message is printed above)
        status = exit_.code
    if status:
        raise RuntimeError(f"{module} exited with status {status} (its error is printed above)")
    return json.loads(out.read_text(encoding="utf-8"))


def cache_step(config: GpuCheckConfig, model: str, layer: int, plan: Plan, tmp: Path) -> Callable:
    dtype = "float32" if config.quick else "bfloat16"

    def step() -> dict[str, Any]:
        argv = ["--model", model, "--layer", str(layer), "--device", config.device]
        argv += ["--dtype", dtype, "--n", str(plan.n), "--batch-size", str(plan.batch_size)]
        argv += ["--repeats", str(plan.repeats), "--max-layer", str(layer)]
        raw = _bench("bench_cache_speed", argv, tmp / f"cache-{model}.json")
        return {"model": model, "layer": layer, "dtype": dtype, "bench": raw}

    return step


def probe_step(config: GpuCheckConfig, plan: Plan, tmp: Path) -> Callable:
    from interp.probe import ProbeConfig, train_probe

    layer = 0 if config.quick else 14

    def auroc(device: str, dtype: str, name: str) -> float:
        run = train_probe(
            ProbeConfig(
                model=plan.small,
                layers=(layer,),
                device=device,
                dtype=dtype,
                control_dataset="none",
                max_scenarios=12 if config.quick else None,
                out=str(tmp / name),
                cache_dir=str(tmp / "cache"),
                progress=False,
            )
        )
        return float(run.result(layer).test.metrics.auroc)

    def step() -> dict[str, Any]:
        gpu = auroc(config.device, "float32" if config.quick else "bfloat16", "probe-device")
        cpu = auroc("cpu", "float32", "probe-cpu")
        print(f"layer {layer} held-out AUROC: {config.device} {gpu:.4f}, cpu {cpu:.4f}")
        return {"layer": layer, "auroc_device": gpu, "auroc_cpu": cpu, "difference": gpu - cpu}

    return step


def patching_step(config: GpuCheckConfig, plan: Plan, tmp: Path) -> Callable:
    def step() -> dict[str, Any]:
        argv = ["--model", plan.small, "--device", config.device]
        argv += ["--repeats", str(plan.repeats)]
        # every layer on the GPU; one site on the CPU smoke run (transformer_lens is slow there)
        argv += ["--sites", "resid_pre"] if config.quick else ["--layers", "0-29"]
        return {"bench": _bench("bench_patching", argv, tmp / "patching.json")}

    return step


def _summary(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per step: its headline figures, or why it failed."""
    lines = []
    for name, r in results.items():
        if r["status"] != "ok":
            lines.append(f"{name:22s} FAILED  {r['error']}")
            continue
        memory = f"peak GPU {r['peak_gpu_gib']:.1f} GiB" if r["peak_gpu_gib"] is not None else ""
        bench = r.get("bench", {})
        if name.startswith("cache"):
            figures = {k: v for k, v in bench.items() if "ratio" in k or "tok" in k}
            text = ", ".join(f"{k} {v:.3g}" for k, v in figures.items() if isinstance(v, float))
        elif name == "probe_auroc":
            text = (
                f"AUROC {r['auroc_device']:.3f} on the device, {r['auroc_cpu']:.3f} on the CPU "
                f"(difference {r['difference']:+.3f}; should be within 0.02)"
            )
        else:
            text = (
                f"ratio transformer_lens/interp {bench['ratio_tl_over_interp']:.1f}, "
                f"max |diff| {bench['max_abs_diff']:.1e}"
            )
        lines.append(f"{name:22s} {text}  {memory}  ({r['seconds']:.0f} s)")
    return lines


def run(config: GpuCheckConfig) -> Path | None:
    """Every step in turn; the summary's path, or None when there is no CUDA device."""
    device = torch.device(config.device)
    if device.type != "cuda" and not config.quick:
        raise ConfigError(
            f"--device {config.device} is not a GPU; pass --quick for a smoke run on the CPU"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu_check skipped: no CUDA device here (torch {torch.__version__}, CUDA build: "
            f"{torch.version.cuda or 'none'}). Run it on a GPU machine with a CUDA build of torch."
        )
        return None
    if not config.quick and LLAMA8B_SHAPE not in list_models():  # --quick uses tiny models
        register_model(LLAMA8B_SHAPE, build_llama8b_shape)
    plan = Plan.of(config)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as name:
        tmp = Path(name)
        steps = {
            "cache_smollm2": cache_step(config, plan.small, 0 if config.quick else 14, plan, tmp),
            "cache_llama8b_shape": cache_step(config, plan.large, plan.large_layer, plan, tmp),
            "probe_auroc": probe_step(config, plan, tmp),
            "patching": patching_step(config, plan, tmp),
        }
        results = {name: _run_step(name, step, device) for name, step in steps.items()}
    print("\n=== summary ===")
    print("\n".join(_summary(results)))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out = write_result("gpu_check", config, {"gpu": gpu, "steps": results}, config.out)
    print(f"wrote {out}")
    failed = [name for name, r in results.items() if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"step(s) {', '.join(failed)} failed (tracebacks above; {out})")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(GpuCheckConfig, run, argv, prog="python experiments/gpu_check.py")


if __name__ == "__main__":
    raise SystemExit(main())
