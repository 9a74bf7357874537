"""Benchmark: what loading only the blocks a run needs saves (``load_model(..., max_layer=L)``).

Two variants, each in a fresh Python subprocess (``sys.executable`` running this file with
``--child``), so one's peak memory cannot leak into the other's:

- **full**: ``load_model(model)``; a forward pass reads ``blocks.L.hook_resid_post`` and stops
  after block L (``stop_at_layer=L+1``, as the activation cache does);
- **truncated**: ``load_model(model, max_layer=L)`` keeps blocks 0..L only (config override:
  the other blocks' weights are never read) and empties the output head (its logits would
  mean nothing), so its pass through every kept block costs the same blocks.

Each child imports torch, transformers and transformer-lens first, then resets the kernel's
peak-RSS mark (``/proc/self/clear_refs``) and measures: the load's wall time (checkpoint
fingerprint and bridge boot included), the bytes of the loaded parameters, the peak RSS
increase over the baseline after loading and after the passes, and the median time of
``--repeats`` forward passes (``run_with_cache``) over the first ``--batch`` transcripts of
builtin:consistency, left-padded. The two variants' activations must be equal (the maximum
absolute difference is printed). Ratios ``truncated/full`` are printed and written with the
raw values through :func:`interp.benchmarks.write_result`.

Run: ``python experiments/bench_model_loading.py`` (SmolLM2-135M, layer 14 of 30, CPU: about a
minute); ``--model tiny-random --layer 0`` for a quick mechanical check.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.benchmarks import write_result
from interp.cli import run_cli
from interp.config import ConfigError, ModelOptions
from interp.models import DEFAULT_MODEL

VARIANTS = ("full", "truncated")
MIB = 1024 * 1024


@dataclass
class ModelLoadingConfig(ModelOptions):
    """Load time, memory and forward time of a model loaded whole vs only up to a layer."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec, as for load_model"})
    layer: int = field(default=14, metadata={"help": "the layer read (resid_post)"})
    batch: int = field(default=8, metadata={"help": "transcripts per forward pass"})
    repeats: int = field(default=3, metadata={"help": "forward passes per variant (median)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    out: str | None = field(
        default=None,
        metadata={"help": "JSON results", "default_text": "<cache>/benchmarks/model_loading.json"},
    )
    # Set only in the children this script spawns.
    child: str | None = field(default=None, metadata={"hidden": True})
    child_out: str | None = field(default=None, metadata={"hidden": True})

    def __post_init__(self) -> None:
        if self.layer < 0:
            raise ConfigError(f"--layer must be >= 0, got {self.layer}")
        for name in ("batch", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1")
        if self.threads < 0:
            raise ConfigError("--threads must be >= 0")
        super().__post_init__()


# --- the child: one variant ------------------------------------------------------------------


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _batch(model: Any, n: int) -> tuple[Any, Any]:
    """Input ids and attention mask of the first ``n`` consistency transcripts, left-padded."""
    from interp.data.datasets import load_dataset
    from interp.data.padding import pad_left
    from interp.data.tokens import encode_transcript

    encoded = [
        encode_transcript(model.tokenizer, t, "reply", 1024).input_ids
        for t in load_dataset("builtin:consistency")[:n]
    ]
    ids, attention = pad_left(encoded, model.tokenizer.pad_token_id)
    return ids.to(model.device), attention.to(model.device)


def run_child(config: ModelLoadingConfig) -> dict[str, Any]:
    """Measure one variant (``config.child``) in this process; writes its activations beside
    ``config.child_out`` and returns what it measured."""
    import torch
    from safetensors.torch import save_file

    from interp.benchmarks import timed
    from interp.hooks import hook_name, stop_layer
    from interp.models import load_model

    if config.threads:
        torch.set_num_threads(config.threads)
    # imported before the baseline: the libraries' own memory and import time are not the load's
    import transformer_lens.model_bridge  # noqa: F401
    import transformers  # noqa: F401

    gc.collect()
    was_reset = _reset_peak()
    base = _peak_rss()
    start = time.perf_counter()
    max_layer = config.layer if config.child == "truncated" else None
    model = load_model(config.model, config.device, config.dtype, max_layer=max_layer)
    load_s = time.perf_counter() - start
    after_load = _peak_rss()
    model.check_layer(config.layer)
    hook = hook_name(config.layer)
    stop = stop_layer([hook], model.n_layers)
    ids, attention = _batch(model, config.batch)
    acts: dict[str, Any] = {}

    def forward() -> None:
        with torch.inference_mode():
            _, cache = model.bridge.run_with_cache(
                ids, attention_mask=attention, names_filter=[hook], stop_at_layer=stop
            )
        acts["x"] = cache[hook]

    times = [timed(forward, model.device) for _ in range(config.repeats)]
    save_file({"acts": acts["x"].float().cpu().contiguous()}, f"{config.child_out}.safetensors")
    params = model.bridge.original_model.parameters()
    return {
        "variant": config.child,
        "blocks_loaded": model.n_layers,
        "checkpoint_blocks": model.checkpoint_layers,
        "stop_at_layer": stop,
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "load_s": load_s,
        "forward_s": times,
        "peak_reset": was_reset,
        "peak_increase_after_load_bytes": after_load - base,
        "peak_increase_bytes": _peak_rss() - base,
        "tokens": int(attention.sum()),
        "threads": torch.get_num_threads(),
        "dtype": model.dtype_name,
    }


# --- the parent ------------------------------------------------------------------------------


def _child_args(config: ModelLoadingConfig, variant: str, out: Path) -> list[str]:
    args = [sys.executable, __file__, "--child", variant, "--child-out", str(out)]
    args += ["--model", config.model, "--layer", str(config.layer), "--batch", str(config.batch)]
    args += ["--repeats", str(config.repeats), "--device", config.device]
    return [*args, "--dtype", config.dtype, "--threads", str(config.threads)]


def measure(config: ModelLoadingConfig, folder: Path) -> dict[str, dict[str, Any]]:
    """Each variant's measurements, from its own subprocess."""
    found: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        out = folder / variant
        proc = subprocess.run(
            _child_args(config, variant, out),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the {variant} child failed:\n{proc.stdout[-3000:]}")
        found[variant] = json.loads(out.with_suffix(".json").read_text())
    return found


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summarise(found: dict[str, dict[str, Any]], max_diff: float) -> dict[str, Any]:
    """The ``truncated/full`` ratios of load time, parameter bytes, peak memory and median
    forward time, beside the raw measurements."""
    full, cut = found["full"], found["truncated"]
    median = {v: statistics.median(found[v]["forward_s"]) for v in VARIANTS}
    return {
        "variants": found,
        "max_abs_diff": max_diff,
        "ratios": {
            "load_s": _ratio(cut["load_s"], full["load_s"]),
            "param_bytes": _ratio(cut["param_bytes"], full["param_bytes"]),
            "peak_increase_after_load": _ratio(
                cut["peak_increase_after_load_bytes"], full["peak_increase_after_load_bytes"]
            ),
            "peak_increase": _ratio(cut["peak_increase_bytes"], full["peak_increase_bytes"]),
            "forward_s_median": _ratio(median["truncated"], median["full"]),
        },
    }


def report(summary: dict[str, Any]) -> str:
    lines = []
    for v in VARIANTS:
        m = summary["variants"][v]
        lines.append(
            f"{v:>9}: {m['blocks_loaded']}/{m['checkpoint_blocks']} blocks, "
            f"{m['param_bytes'] / MIB:.0f} MiB of parameters, load {m['load_s']:.2f} s, "
            f"peak +{m['peak_increase_bytes'] / MIB:.0f} MiB, forward median "
            f"{statistics.median(m['forward_s']):.3f} s ({m['tokens']} tokens)"
        )
    lines += [f"RATIO truncated/full {k} = {v}" for k, v in summary["ratios"].items()]
    lines.append(f"activations: max abs difference {summary['max_abs_diff']:.3g}")
    return "\n".join(lines)


def run(config: ModelLoadingConfig) -> Path | None:
    if config.child is not None:
        result = run_child(config)
        Path(f"{config.child_out}.json").write_text(json.dumps(result))
        return None
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        found = measure(config, Path(tmp))
        a, b = (load_file(Path(tmp) / f"{v}.safetensors")["acts"] for v in VARIANTS)
        max_diff = float((a - b).abs().max())
    summary = summarise(found, max_diff)
    print(report(summary))
    return write_result("model_loading", config, summary, config.out, found["full"]["threads"])


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(ModelLoadingConfig, run, argv, prog="python experiments/bench_model_loading.py")


if __name__ == "__main__":
    sys.exit(main())
