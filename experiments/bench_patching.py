"""Benchmark: batched activation patching against ``transformer_lens.patching``.

Both paths patch the same sites (``resid_pre``, ``attn_out``, ``mlp_out`` by default) at the
same layers and every position of one prompt pair that differs in one word, into the same
model, with the same metric (``log p(" yes") - log p(" no")`` at the last position):

- ``transformer_lens``: ``transformer_lens.patching.generic_activation_patch`` with its
  ``layer_pos_patch_setter`` and an ``index_df`` of the chosen layers x positions (the
  function behind ``get_act_patch_resid_pre`` and friends): one forward pass per patch;
- ``interp``: :func:`interp.patching.patch_sweep`, ``--batch-size`` patches per forward pass
  and logits only at the position the metric reads.

The two results are compared (max absolute difference is printed; it should be ~1e-5 or
less). Each path runs ``--repeats`` times in alternating order; the median is reported and
``RATIO transformer_lens / interp`` is the number to read (target: >= 5).
Wall-clock on a shared machine is noisy: compare ratios from one run only.

Defaults (default model, a 19-token prompt, 3 sites x 10 layers x 19 positions = 570
patches, 1 repeat) take about 4 minutes on an idle 2-core CPU, most of it in the reference.
On a GPU use ``--layers 0-29 --repeats 3``.

Run: ``python experiments/bench_patching.py``; quick check on the tiny random model:
``python experiments/bench_patching.py --model tiny-random``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import transformer_lens
import transformer_lens.patching as tl_patching

from interp.artifacts import write_json_atomic
from interp.hooks import parse_layers
from interp.models import DEFAULT_MODEL, load_model
from interp.patching import LogProbDiff, PatchInput, patch_sweep
from interp.paths import cache_root

CLEAN = "The seller knew the brakes were faulty. When the buyer asked if the car was safe, she said"
CORRUPT = "The seller knew the brakes were fine. When the buyer asked if the car was safe, she said"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="auto")
    p.add_argument("--sites", default="resid_pre,attn_out,mlp_out")
    p.add_argument("--layers", default="0-29:3", help="layers, or a range with a step: 0-29:3")
    p.add_argument("--batch-size", type=int, default=64, help="patches per forward pass")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="JSON (default <cache>/benchmarks/)")
    return p.parse_args(argv)


def layers_from(text: str, n_layers: int) -> list[int]:
    spec, _, step = text.partition(":")
    return [layer for layer in parse_layers(spec) if layer < n_layers][:: int(step or 1)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = load_model(args.model, device=args.device)
    tok = model.tokenizer
    source = PatchInput(tok(CLEAN, return_tensors="pt").input_ids[0])
    target = PatchInput(tok(CORRUPT, return_tensors="pt").input_ids[0])
    if len(source) != len(target):
        raise SystemExit("the two prompts must tokenize to the same length")
    sites = tuple(args.sites.split(","))
    layers = layers_from(args.layers, model.n_layers)
    metric = LogProbDiff.from_text(tok, " yes", " no")
    yes, no = int(metric.comply[0]), int(metric.refuse[0])

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        logp = logits[0, -1].log_softmax(-1)
        return logp[yes] - logp[no]

    index = pd.DataFrame(
        [(layer, pos) for layer in layers for pos in range(len(target))], columns=["layer", "pos"]
    )

    def run_tl() -> torch.Tensor:
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

    run_ours = partial(
        patch_sweep,
        model,
        target,
        metric,
        source_input=source,
        sites=sites,
        layers=layers,
        batch_size=args.batch_size,
        progress=False,
    )
    times: dict[str, list[float]] = {"transformer_lens": [], "interp": []}
    outputs: dict[str, torch.Tensor] = {}
    for repeat in range(args.repeats):
        order = [("interp", lambda: run_ours().values), ("transformer_lens", run_tl)]
        for name, fn in order[:: 1 if repeat % 2 else -1]:
            start = time.perf_counter()
            outputs[name] = fn()
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    max_diff = float((outputs["interp"] - outputs["transformer_lens"]).abs().max())
    medians = {k: statistics.median(v) for k, v in times.items()}
    n_patches = len(sites) * len(layers) * len(target)
    print(
        f"model {model.name} on {model.device}; prompt {len(target)} tokens; sites {sites}; "
        f"layers {layers}; {n_patches} patches; batch {args.batch_size}"
    )
    print(f"max |interp - transformer_lens| = {max_diff:.2e}")
    for name, seconds in medians.items():
        print(f"{name:17s} {seconds:8.2f} s  ({1000 * seconds / n_patches:6.1f} ms/patch)")
    ratio = medians["transformer_lens"] / medians["interp"]
    print(f"RATIO transformer_lens / interp = {ratio:.2f}  (target >= 5)")
    out = args.out or cache_root() / "benchmarks" / "patching.json"
    write_json_atomic(
        Path(out),
        {
            "model": model.name,
            "device": str(model.device),
            "prompt_tokens": len(target),
            "sites": sites,
            "layers": layers,
            "patches": n_patches,
            "batch_size": args.batch_size,
            "max_abs_diff": max_diff,
            "seconds": times,
            "median_seconds": medians,
            "ratio_tl_over_interp": ratio,
            "torch": torch.__version__,
            "transformer_lens": getattr(transformer_lens, "__version__", "?"),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
