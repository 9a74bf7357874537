"""Benchmark: batched activation patching against ``transformer_lens.patching``.

Both paths patch the same sites (``resid_pre``, ``attn_out``, ``mlp_out`` by default) at the
same layers and every position of one prompt pair that differs in one word, into the same
model, with the same metric (``log p(" yes") - log p(" no")`` at the last position):

- ``transformer_lens``: ``transformer_lens.patching.generic_activation_patch`` with its
  ``layer_pos_patch_setter`` and an ``index_df`` of the chosen layers x positions (the
  function behind ``get_act_patch_resid_pre`` and friends): one forward pass per patch;
- ``interp``: :func:`interp.patching.patch_sweep`, ``--batch-size`` patches per forward pass,
  each patch run from its own block and position on, logits only at the position the metric
  reads, and patches that write the target's own activation (before the changed word) not
  run at all.

The two results are compared (max absolute difference is printed; it should be ~1e-5 or
less). Each path runs ``--repeats`` times in alternating order; the median is reported and
``RATIO transformer_lens / interp`` is the number to read (target: >= 10), with the spread
of the per-repeat ratios. Wall-clock on a shared machine is noisy: compare ratios from one
run only. The work of each path is also counted, which no load changes: positions run
through a block (summed over blocks and batch rows) and positions unembedded; for
``transformer_lens`` it is one whole pass per patch plus the source run.

Defaults (default model, a 19-token prompt, 3 sites x 10 layers x 19 positions = 570
patches, 1 repeat) take about 4 minutes on an idle 2-core CPU, most of it in the reference.
On a GPU use ``--layers 0-29 --repeats 3``.

Run: ``python experiments/bench_patching.py``; quick check on the tiny random model:
``python experiments/bench_patching.py --model tiny-random``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import transformer_lens.patching as tl_patching

from interp.benchmarks import sync, write_result
from interp.cli import run_cli
from interp.config import (
    ConfigError,
    ModelOptions,
    model_options,
)
from interp.hooks import parse_layer_steps
from interp.models import DEFAULT_MODEL, LoadedModel, load_model
from interp.patching import LogProbDiff, PatchInput, patch_sweep

CLEAN = "The seller knew the brakes were faulty. When the buyer asked if the car was safe, she said"
CORRUPT = "The seller knew the brakes were fine. When the buyer asked if the car was safe, she said"


@dataclass
class PatchingBenchConfig(ModelOptions):
    """Batched activation patching (interp.patching) against transformer_lens.patching."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec, as for load_model"})
    sites: str = field(
        default="resid_pre,attn_out,mlp_out", metadata={"help": "sites, comma-separated"}
    )
    layers: str = field(
        default="0-29:3", metadata={"help": "layers, or a range with a step: 0-29:3"}
    )
    batch_size: int = field(default=64, metadata={"help": "patches per forward pass"})
    repeats: int = field(default=1, metadata={"help": "timed runs of each path (median)"})
    out: str | None = field(
        default=None,
        metadata={"help": "JSON results", "default_text": "<cache>/benchmarks/patching.json"},
    )

    def __post_init__(self) -> None:
        parse_layer_steps(self.layers)  # says how to write layers if it cannot read them
        super().__post_init__()
        for name in ("batch_size", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")


def reference_sweep(
    model: LoadedModel,
    source: PatchInput,
    target: PatchInput,
    metric: LogProbDiff,
    sites: tuple[str, ...],
    layers: list[int],
) -> torch.Tensor:
    """``transformer_lens.patching.generic_activation_patch`` over the same sites, layers and
    positions: one forward pass per patch; values ``[site, layer, position]``."""
    yes, no = int(metric.comply[0]), int(metric.refuse[0])

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        logp = logits[0, -1].log_softmax(-1)
        return logp[yes] - logp[no]

    index = pd.DataFrame(
        [(layer, pos) for layer in layers for pos in range(len(target))], columns=["layer", "pos"]
    )
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(source.tokens[None].to(model.device))
        out = [
            tl_patching.generic_activation_patch(
                model.bridge,
                target.tokens[None].to(model.device),
                cache,
                tl_metric,
                patch_setter=tl_patching.layer_pos_patch_setter,
                activation_name=site,
                index_df=index,
            )
            for site in sites
        ]
    return torch.stack(out).reshape(len(sites), len(layers), len(target)).cpu()


def count_work(model: LoadedModel, fn: Callable[[], object]) -> dict[str, int]:
    """Run ``fn`` once, counting positions through every block (batch x positions, summed)
    and positions reaching the unembedding."""
    work = {"block_positions": 0, "unembed_positions": 0}

    def counter(key: str) -> Callable[..., None]:
        def count(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else next(iter(kwargs.values()))
            work[key] += int(hidden.shape[0] * hidden.shape[1]) if hidden.ndim == 3 else 0

        return count

    modules = [(b, "block_positions") for b in model.bridge.blocks]
    modules.append((model.bridge.unembed, "unembed_positions"))
    handles = [m.register_forward_pre_hook(counter(k), with_kwargs=True) for m, k in modules]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return work


def time_both(
    paths: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    """Each path ``repeats`` times, alternating which goes first: seconds and last values."""
    times: dict[str, list[float]] = {"transformer_lens": [], "interp": []}
    outputs: dict[str, torch.Tensor] = {}
    for repeat in range(repeats):
        order = ["interp", "transformer_lens"]
        for name in order[:: 1 if repeat % 2 else -1]:
            start = time.perf_counter()
            outputs[name] = paths[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times, outputs


def run(config: PatchingBenchConfig) -> Path:
    model = load_model(config.model, **model_options(config))
    tok = model.tokenizer
    source = PatchInput(tok(CLEAN, return_tensors="pt").input_ids[0])
    target = PatchInput(tok(CORRUPT, return_tensors="pt").input_ids[0])
    if len(source) != len(target):
        raise ValueError("the two prompts must tokenize to the same length")
    sites = tuple(config.sites.split(","))
    layers = parse_layer_steps(config.layers, model.n_layers)
    metric = LogProbDiff.from_text(tok, " yes", " no")
    ours = partial(
        patch_sweep,
        model,
        target,
        metric,
        source_input=source,
        sites=sites,
        layers=layers,
        batch_size=config.batch_size,
        progress=False,
    )
    paths = {
        "interp": lambda: ours().values,
        "transformer_lens": lambda: reference_sweep(model, source, target, metric, sites, layers),
    }
    n_patches = len(sites) * len(layers) * len(target)
    work = {
        "interp": count_work(model, paths["interp"]),
        "transformer_lens": {  # one whole pass per patch, and the source run
            "block_positions": (n_patches + 1) * len(target) * model.n_layers,
            "unembed_positions": (n_patches + 1) * len(target),
        },
    }
    times, outputs = time_both(paths, config.repeats, model.device)
    max_diff = float((outputs["interp"] - outputs["transformer_lens"]).abs().max())
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratios = [a / b for a, b in zip(times["transformer_lens"], times["interp"], strict=True)]
    print(
        f"model {model.name} on {model.device}; prompt {len(target)} tokens; sites {sites}; "
        f"layers {layers}; {n_patches} patches; batch {config.batch_size}"
    )
    print(f"max |interp - transformer_lens| = {max_diff:.2e}")
    for name, seconds in medians.items():
        print(f"{name:17s} {seconds:8.2f} s  ({1000 * seconds / n_patches:6.1f} ms/patch)")
    for key in ("block_positions", "unembed_positions"):
        ours, theirs = work["interp"][key], work["transformer_lens"][key]
        print(f"{key}: interp {ours}, transformer_lens {theirs} ({theirs / max(ours, 1):.1f}x)")
    ratio = medians["transformer_lens"] / medians["interp"]
    spread = f"per repeat {min(ratios):.2f} to {max(ratios):.2f}" if len(ratios) > 1 else "1 repeat"
    print(f"RATIO transformer_lens / interp = {ratio:.2f}  ({spread}; target >= 10)")
    result = {
        "model": model.name,
        "device": str(model.device),
        "prompt_tokens": len(target),
        "sites": sites,
        "layers": layers,
        "patches": n_patches,
        "batch_size": config.batch_size,
        "max_abs_diff": max_diff,
        "seconds": times,
        "median_seconds": medians,
        "ratio_tl_over_interp": ratio,
        "ratios_per_repeat": ratios,
        "work": work,
        "load_average": list(os.getloadavg()),
    }
    out = write_result("patching", config, result, config.out)
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PatchingBenchConfig, run, argv, prog="python experiments/bench_patching.py")


if __name__ == "__main__":
    raise SystemExit(main())
