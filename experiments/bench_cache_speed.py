"""Benchmark: how fast is caching one residual hook compared with a plain forward pass?

What is measured (all on the same left-padded batches, in the same run):

- ``hf_forward``: a plain Hugging Face forward pass (logits included) of a *separate* copy of
  the model (booting the TransformerBridge rewires the HF model in place, so the bridge's own
  copy cannot serve as the baseline), under ``torch.inference_mode``;
- ``bridge_cache``: our caching path, ``model.bridge.run_with_cache(ids, attention_mask=...,
  names_filter=[hook], stop_at_layer=layer + 1)`` under ``torch.inference_mode``, which
  stops after the hooked block;
- ``cache_activations``: :func:`interp.cache.cache_activations` end to end into a fresh
  temporary cache folder (tokenising, batching, the same forward pass, mean pooling, writing
  safetensors shards and reading them back), to show the overhead around the forward pass;
- ``hf_trunk`` (only with ``--hf-trunk``): the HF decoder without the LM head
  (``hf_model.model``), which tells how much of the baseline is the 49k-wide unembedding.

Batches are built like ``cache_activations`` builds them: transcripts encoded with
``encode_transcript``, sorted by length, cut into ``--batch-size`` chunks and left-padded with
``pad_batch``. A warm-up batch runs through each path first; then the paths run in turn
(rotating their order) ``--repeats`` times and the median time of each is reported. Before
timing, the hooked activations are checked against the HF copy's ``hidden_states[layer + 1]``
on non-padding positions, so both paths compute the same thing.

Target: ``bridge_cache / hf_forward <= ~0.6`` at the default layer 14 of the 30-block
default model (the pass stops after block 15 of 30 and skips the LM head).

Reading the output: one row per path with the median seconds over the whole set, the
spread (min-max), milliseconds per transcript and tokens per second (padding included); then
``RATIO cache/HF``, the one number to compare with the target (below 1 = caching is cheaper),
and the end-to-end overhead of ``cache_activations`` over the bare ``run_with_cache`` loop.
Timings are wall-clock (``time.perf_counter``) and noisy on a shared CPU; compare ratios
from one run, never against numbers stored from another machine or run.

Defaults: the first 32 transcripts of builtin:consistency (~220 tokens each) in batches of
16, 3 repeats: about 3 minutes on an otherwise idle 2-core CPU with the default model, several
times that on a busy one (use ``--n 16`` there). On a GPU use ``--n 256`` or more.

Run: ``python experiments/bench_cache_speed.py``; quick check:
``python experiments/bench_cache_speed.py --n 8 --batch-size 4 --repeats 1``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import write_json_atomic
from interp.cache import cache_activations, mean_pool, pad_batch
from interp.data.datasets import build_consistency
from interp.data.tokens import TOKEN_SELECTIONS, encode_transcript
from interp.data.transcripts import Transcript
from interp.hooks import check_layer, hook_name, stop_layer
from interp.models import DEFAULT_MODEL, _build, load_model
from interp.paths import cache_root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time caching one hook vs a plain HF forward pass on the same batches."
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help="model spec, as for load_model")
    p.add_argument("--layer", type=int, default=14, help="block whose resid_post is cached")
    p.add_argument("--n", type=int, default=32, help="transcripts of builtin:consistency")
    p.add_argument("--batch-size", type=int, default=16, help="transcripts per forward pass")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 can be faster on a busy machine",
    )
    p.add_argument("--tokens", default="answer", choices=TOKEN_SELECTIONS)
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument(
        "--hf-trunk",
        action="store_true",
        help="also time the HF decoder without its LM head (costs one more pass per repeat)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default: <cache>/benchmarks/cache_speed.json)",
    )
    args = p.parse_args(argv)
    for name in ("n", "batch_size", "repeats", "max_tokens", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock time covers the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def transcripts_for(n: int) -> list[Transcript]:
    pool = build_consistency()
    if n > len(pool):
        pool = build_consistency(per_cell=None)
    if n > len(pool):
        raise SystemExit(f"--n {n} is more than the {len(pool)} transcripts available")
    return pool[:n]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float32

    print(f"Loading {args.model} (bridge) and a separate Hugging Face copy...", flush=True)
    model = load_model(args.model, device=args.device, dtype=dtype)
    device = model.device
    check_layer(args.layer, model.n_layers)
    hook = hook_name(args.layer)
    stop = stop_layer([hook], model.n_layers)
    _, hf_model, _ = _build(args.model, dtype)  # a fresh copy; the bridge rewired its own
    hf_model.eval().to(device)

    transcripts = transcripts_for(args.n)
    encoded = [
        encode_transcript(model.tokenizer, t, args.tokens, args.max_tokens) for t in transcripts
    ]
    lengths = [len(e.input_ids) for e in encoded]
    order = sorted(range(len(encoded)), key=lambda i: (lengths[i], i))  # as cache_activations
    pad_id = model.tokenizer.pad_token_id
    batches = [
        pad_batch([encoded[i] for i in order[k : k + args.batch_size]], pad_id, device)
        for k in range(0, len(order), args.batch_size)
    ]
    n_real = sum(lengths)
    n_padded = sum(ids.numel() for ids, _, _ in batches)

    def hf_pass(ids: torch.Tensor, att: torch.Tensor, **kw: Any) -> Any:
        with torch.inference_mode():
            return hf_model(input_ids=ids, attention_mask=att, **kw)

    def bridge_pass(ids: torch.Tensor, att: torch.Tensor) -> Any:
        with torch.inference_mode():
            _, acts = model.bridge.run_with_cache(
                ids, attention_mask=att, names_filter=[hook], stop_at_layer=stop
            )
        return acts

    def run_hf() -> None:
        for ids, att, _ in batches:
            hf_pass(ids, att)

    def run_trunk() -> None:
        for ids, att, _ in batches:
            with torch.inference_mode():
                hf_model.model(input_ids=ids, attention_mask=att)

    def run_bridge() -> None:
        for ids, att, _ in batches:
            bridge_pass(ids, att)

    def run_end_to_end() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
            cache_activations(
                model,
                transcripts,
                [hook],
                args.tokens,
                batch_size=args.batch_size,
                max_tokens=args.max_tokens,
                cache_dir=Path(tmp),
                progress=False,
            )
            sync(device)

    # Warm-up (one batch per path) doubling as a check that both paths agree.
    print("Warm-up and agreement check on one batch...", flush=True)
    ids, att, sel = batches[0]
    acts = bridge_pass(ids, att)[hook]
    check: dict[str, Any] = {"checked": False}
    if args.layer + 1 < model.n_layers:  # HF applies the final norm to its last hidden state
        ref = hf_pass(ids, att, output_hidden_states=True).hidden_states[args.layer + 1]
        real = att.bool()
        diff = (acts - ref)[real].abs().max().item()
        pooled_a, pooled_r = mean_pool(acts, sel), mean_pool(ref, sel)
        pooled_rel = ((pooled_a - pooled_r).norm(dim=1) / pooled_r.norm(dim=1)).max().item()
        check = {
            "checked": True,
            "max_abs_diff_real_tokens": diff,
            "max_abs_activation": ref[real].abs().max().item(),
            "max_rel_diff_pooled": pooled_rel,
        }
    else:
        hf_pass(ids, att)
    if args.hf_trunk:
        with torch.inference_mode():
            hf_model.model(input_ids=ids, attention_mask=att)
    with tempfile.TemporaryDirectory(prefix="bench-cache-warm-") as tmp:
        cache_activations(
            model,
            transcripts[: args.batch_size],
            [hook],
            args.tokens,
            batch_size=args.batch_size,
            max_tokens=args.max_tokens,
            cache_dir=Path(tmp),
            progress=False,
        )

    paths: dict[str, Callable[[], None]] = {
        "hf_forward": run_hf,
        "bridge_cache": run_bridge,
        "cache_activations": run_end_to_end,
    }
    if args.hf_trunk:
        paths["hf_trunk"] = run_trunk
    names = list(paths)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(paths[name], device))
        print(
            f"  repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
            flush=True,
        )

    median = {name: statistics.median(v) for name, v in times.items()}
    ratio = median["bridge_cache"] / median["hf_forward"]
    overhead = median["cache_activations"] / median["bridge_cache"] - 1.0

    labels = {
        "hf_forward": "HF forward (full, logits)",
        "hf_trunk": "HF trunk (no LM head)",
        "bridge_cache": f"run_with_cache {hook} (stop {stop})",
        "cache_activations": "cache_activations end to end",
    }
    print()
    print(
        f"model {model.name} on {device} ({torch.get_num_threads()} threads), "
        f"{args.n} transcripts in {len(batches)} batches of <= {args.batch_size}, "
        f"{n_real} tokens ({n_padded} with padding), median of {args.repeats}"
    )
    if check["checked"]:
        print(
            f"agreement: max |bridge - HF hidden_states[{args.layer + 1}]| on real tokens = "
            f"{check['max_abs_diff_real_tokens']:.2e} (activations up to "
            f"{check['max_abs_activation']:.3g}); pooled rel. diff "
            f"{check['max_rel_diff_pooled']:.2e}"
        )
    width = max(len(labels[name]) for name in median)
    header = f"{'path':<{width}} {'median s':>9} {'min-max s':>13} {'ms/transcr':>11} {'tok/s':>8}"
    print(header)
    print("-" * len(header))
    for name in ["hf_forward", "hf_trunk", "bridge_cache", "cache_activations"]:
        if name not in median:
            continue
        m = median[name]
        spread = f"{min(times[name]):.2f}-{max(times[name]):.2f}"
        print(
            f"{labels[name]:<{width}} {m:>9.2f} {spread:>13} "
            f"{1000 * m / args.n:>11.1f} {n_padded / m:>8.0f}"
        )
    print()
    print(f"end-to-end overhead of cache_activations over run_with_cache: {100 * overhead:+.1f}%")
    print(
        f"RATIO cache/HF = {ratio:.3f}  (run_with_cache / full HF forward; "
        f"target <= ~0.6 for layer 14 of 30)"
    )

    out = args.out or cache_root() / "benchmarks" / "cache_speed.json"
    result = {
        "benchmark": "cache_speed",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"name": model.name, "n_layers": model.n_layers, "d_model": model.d_model},
        "hook": hook,
        "stop_at_layer": stop,
        "hf_attn_implementation": getattr(hf_model.config, "_attn_implementation", None),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "n_transcripts": args.n,
        "n_batches": len(batches),
        "n_tokens": n_real,
        "n_tokens_padded": n_padded,
        "times_s": times,
        "median_s": median,
        "ratio_cache_over_hf": ratio,
        "target_ratio_max": 0.6,
        "end_to_end_overhead": overhead,
        "agreement": check,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(Path(out), result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
