"""Benchmark: does caching 2,000 transcripts need more memory than caching 200?

What is measured: the peak memory that :func:`interp.cache.cache_activations` adds on top of a
loaded model, for a large and a small set of transcripts. ``cache_activations`` streams shards
of ``--shard-size`` pooled vectors to disk, so its peak should not grow with the number of
transcripts. Each size runs in a fresh Python subprocess (``sys.executable`` running this file
with ``--child``), so one run's peak cannot leak into the other's. In the child:

1. load the model, build the transcripts, run a warm-up ``cache_activations`` on one batch
   (into its own temporary folder), so one-time allocations (kernels, lazy imports, buffers)
   are not counted;
2. reset the kernel's peak-RSS mark where Linux allows it (``/proc/self/clear_refs``), then
   read the baseline: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (and, on CUDA,
   ``torch.cuda.memory_allocated`` after ``reset_peak_memory_stats``);
3. cache one residual hook for every transcript into a fresh temporary cache folder
   (``tokens=--tokens``, ``shard_size=--shard-size``), timed with ``time.perf_counter``;
4. read ``ru_maxrss`` (and ``torch.cuda.max_memory_allocated``) again.

The reported number is the peak increase, step 4 minus step 2. Where the peak mark cannot be
reset, the baseline is the peak so far (model loading included), which can hide an increase
smaller than the loading transient; the output then says "peak reset: no".

Defaults: the tiny random 2-layer model (``--model tiny-random``, hook
``blocks.0.hook_resid_post``, so the pass skips the LM head), ``tokens=answer``, shard size
256, batch size 16, 2,000 vs 200 transcripts: ``build_consistency(per_cell=None)`` (2,016)
cut to 2,000, and its first 200 (larger sizes repeat the list under new ids). Each size runs
``--repeats`` (3) times, in alternating order, and the medians are reported: with the tiny
model the increase is 40-130 MiB and identical runs differ by tens of MiB (allocator and
tokenizer-thread noise), so single runs give ratios anywhere from ~0.5 to ~2.

Target: ``RATIO large/small`` (peak increase for 2,000 over that for 200) of about 1.

Reading the output: a row per size with the baseline RSS, the peak RSS, the peak increase
(MiB), the caching time and the shards written; then the ratio, with the absolute difference
beside it (differences of a few tens of MiB are within the noise of identical runs).

The children use one torch thread by default (``--threads 1``; ``--threads 0`` keeps torch's
own choice): time is not what is measured here, and on a busy 2-core CPU two threads made the
tiny model's forward pass ~20 times slower.

Run: ``python experiments/bench_cache_memory.py`` (about 1.5 minutes on a 2-core CPU);
``--model smollm2-135m-instruct`` measures the real model (much slower on a CPU:
try ``--large 400 --small 40``).
"""

from __future__ import annotations

import dataclasses
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
from interp.config import ConfigError

MIB = 1024 * 1024


@dataclass
class CacheMemoryConfig:
    """Peak memory of cache_activations for a large vs a small transcript set."""

    model: str = field(default="tiny-random", metadata={"help": "model spec, as for load_model"})
    layer: int | None = field(
        default=None,
        metadata={
            "help": "block whose resid_post is cached",
            "default_text": "min(14, n_layers - 2)",
        },
    )
    large: int = field(default=2000, metadata={"help": "transcripts in the large run"})
    small: int = field(default=200, metadata={"help": "transcripts in the small run"})
    tokens: str = field(
        default="answer",
        metadata={"help": "token selection", "choices": ("answer", "reply", "last")},
    )
    batch_size: int = field(default=16, metadata={"help": "transcripts per forward pass"})
    shard_size: int = field(default=256, metadata={"help": "pooled vectors per shard"})
    max_tokens: int = field(default=1024, metadata={"help": "longer transcripts cut from left"})
    repeats: int = field(default=3, metadata={"help": "subprocess runs per size (median)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, mps"})
    threads: int = field(
        default=1, metadata={"help": "torch CPU threads in the children (0: torch's default)"}
    )
    out: str | None = field(
        default=None,
        metadata={"help": "JSON results", "default_text": "<cache>/benchmarks/cache_memory.json"},
    )
    # Set only in the children this script spawns (one size each).
    child: int | None = field(default=None, metadata={"hidden": True})
    child_out: str | None = field(default=None, metadata={"hidden": True})

    def __post_init__(self) -> None:
        for name in ("large", "small", "batch_size", "shard_size", "max_tokens", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")


# --- the child: one size, one fresh process -----------------------------------------------


def peak_rss_bytes() -> int:
    """``ru_maxrss`` in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    current = current_rss_bytes()
    # The reset worked if the peak now sits near the current RSS (not at the old high mark).
    return current is not None and peak_rss_bytes() <= current + 4 * MIB


def transcripts_for(n: int) -> list[Any]:
    from interp.data.datasets import build_consistency

    pool = build_consistency(per_cell=None)
    out = list(pool[:n])
    copy = 1
    while len(out) < n:  # repeat the list under distinct ids
        out += [dataclasses.replace(t, id=f"{t.id}~{copy}") for t in pool[: n - len(out)]]
        copy += 1
    return out


def run_child(config: CacheMemoryConfig) -> dict[str, Any]:
    import torch

    from interp.cache import cache_activations
    from interp.hooks import check_layer, hook_name
    from interp.models import load_model

    if config.threads:
        torch.set_num_threads(config.threads)
    model = load_model(config.model, device=config.device)
    layer = config.layer if config.layer is not None else min(14, max(0, model.n_layers - 2))
    check_layer(layer, model.n_layers)
    hook = hook_name(layer)
    transcripts = transcripts_for(config.child)
    kwargs: dict[str, Any] = dict(
        tokens=config.tokens,
        batch_size=config.batch_size,
        max_tokens=config.max_tokens,
        shard_size=config.shard_size,
        progress=False,
    )
    with tempfile.TemporaryDirectory(prefix="bench-mem-warm-") as tmp:  # warm-up
        cache_activations(
            model, transcripts[: config.batch_size], [hook], cache_dir=Path(tmp), **kwargs
        )
    gc.collect()
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(model.device)
        torch.cuda.reset_peak_memory_stats(model.device)
        cuda_base = torch.cuda.memory_allocated(model.device)
    was_reset = reset_peak_rss()
    rss_now = current_rss_bytes()
    base = peak_rss_bytes()

    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        start = time.perf_counter()
        acts = cache_activations(model, transcripts, [hook], cache_dir=Path(tmp), **kwargs)
        if cuda:
            torch.cuda.synchronize(model.device)
        seconds = time.perf_counter() - start
        shards = sorted(acts.path.glob("shard-*.safetensors"))
        disk = sum(s.stat().st_size for s in shards)
        shape = list(acts[hook].shape)
        del acts
    peak = peak_rss_bytes()
    result: dict[str, Any] = {
        "n_transcripts": len(transcripts),
        "model": model.name,
        "hook": hook,
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "peak_reset": was_reset,
        "rss_before_bytes": rss_now,
        "baseline_peak_rss_bytes": base,
        "peak_rss_bytes": peak,
        "peak_increase_bytes": peak - base,
        "seconds": seconds,
        "n_shards": len(shards),
        "shard_bytes": disk,
        "pooled_shape": shape,
    }
    if cuda:
        cuda_peak = torch.cuda.max_memory_allocated(model.device)
        result.update(
            cuda_baseline_bytes=cuda_base,
            cuda_peak_bytes=cuda_peak,
            cuda_peak_increase_bytes=cuda_peak - cuda_base,
        )
    return result


# --- the parent: one subprocess per size and repeat ---------------------------------------


def child_argv(config: CacheMemoryConfig, n: int, out: Path) -> list[str]:
    """The flags of a child that caches ``n`` transcripts and writes its result to ``out``."""
    argv = ["--child", str(n), "--child-out", str(out)]
    for name in ("model", "tokens", "batch_size", "shard_size", "max_tokens", "device"):
        argv += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    if config.layer is not None:
        argv += ["--layer", str(config.layer)]
    return [*argv, "--threads", str(config.threads)]


def spawn(config: CacheMemoryConfig, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mem-out-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *child_argv(config, n, out)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not out.is_file():
            sys.stderr.write(proc.stdout[-4000:])
            raise RuntimeError(f"child for {n} transcripts failed (exit {proc.returncode})")
        result = json.loads(out.read_text())
        result["process_seconds"] = time.perf_counter() - start
        return result


def measure(config: CacheMemoryConfig) -> dict[str, list[dict[str, Any]]]:
    """Each size ``repeats`` times, in alternating order, each run in a fresh subprocess."""
    sizes = {"small": config.small, "large": config.large}
    runs: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
    for r in range(config.repeats):
        for label in ("small", "large") if r % 2 == 0 else ("large", "small"):
            print(f"run {r + 1}/{config.repeats}: {sizes[label]} transcripts...", flush=True)
            res = spawn(config, sizes[label])
            runs[label].append(res)
            print(
                f"  peak +{res['peak_increase_bytes'] / MIB:.1f} MiB, "
                f"{res['seconds']:.1f} s caching, {res['process_seconds']:.1f} s in all",
                flush=True,
            )
    return runs


def _median(runs: dict[str, list[dict[str, Any]]], label: str, key: str) -> float:
    return statistics.median(r[key] for r in runs[label])


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median peak increases per size and their ratio (RSS, and CUDA where measured)."""
    cuda = "cuda_peak_increase_bytes" in runs["small"][0]
    inc = {label: _median(runs, label, "peak_increase_bytes") for label in runs}
    cuda_inc = (
        {label: _median(runs, label, "cuda_peak_increase_bytes") for label in runs} if cuda else {}
    )
    return {
        "median_peak_increase_bytes": inc,
        "ratio_large_over_small": inc["large"] / inc["small"] if inc["small"] > 0 else float("nan"),
        "cuda_median_peak_increase_bytes": cuda_inc if cuda else None,
        "cuda_ratio_large_over_small": (
            cuda_inc["large"] / cuda_inc["small"] if cuda and cuda_inc["small"] > 0 else None
        ),
        "target_ratio": 1.0,
        "peak_reset": all(r["peak_reset"] for rs in runs.values() for r in rs),
    }


def report(config: CacheMemoryConfig, runs: dict[str, list[dict[str, Any]]], summary: dict) -> str:
    """The table of medians per size and the ratio."""
    first = runs["small"][0]
    cuda = summary["cuda_median_peak_increase_bytes"] is not None
    key = "cuda_peak_increase_bytes" if cuda else "peak_increase_bytes"
    inc = summary["median_peak_increase_bytes"]
    sizes = {"small": config.small, "large": config.large}
    lines = [
        "",
        f"model {first['model']}, hook {first['hook']}, tokens={config.tokens}, "
        f"shard size {config.shard_size}, batch size {config.batch_size}, device "
        f"{first['device']}, {first['torch_threads']} threads; peak reset: "
        f"{'yes' if summary['peak_reset'] else 'no'}; median of {config.repeats}",
    ]
    header = (
        f"{'transcripts':>11} {'base MiB':>9} {'peak MiB':>9} {'+peak MiB':>10}"
        f"{' +CUDA MiB' if cuda else ''} {'cache s':>8} {'shards':>6} {'disk MiB':>9}"
    )
    lines += [header, "-" * len(header)]
    for label in ("small", "large"):
        cuda_col = f" {_median(runs, label, key) / MIB:>10.1f}" if cuda else ""
        lines.append(
            f"{sizes[label]:>11} {_median(runs, label, 'baseline_peak_rss_bytes') / MIB:>9.1f} "
            f"{_median(runs, label, 'peak_rss_bytes') / MIB:>9.1f} {inc[label] / MIB:>10.1f}"
            f"{cuda_col} {_median(runs, label, 'seconds'):>8.1f} {runs[label][0]['n_shards']:>6} "
            f"{runs[label][0]['shard_bytes'] / MIB:>9.2f}"
        )
    lines.append("")
    if summary["cuda_ratio_large_over_small"] is not None:
        lines.append(f"CUDA peak ratio large/small = {summary['cuda_ratio_large_over_small']:.2f}")
    diff = (inc["large"] - inc["small"]) / MIB
    lines.append(
        f"RATIO large/small = {summary['ratio_large_over_small']:.2f}  (peak RSS increase, "
        f"{config.large} vs {config.small} transcripts; difference {diff:+.1f} MiB; target ~1)"
    )
    return "\n".join(lines)


def run(config: CacheMemoryConfig) -> Path | None:
    if config.child is not None:  # in a child: one size, written where the parent reads it
        result = run_child(config)
        Path(str(config.child_out)).write_text(json.dumps(result))
        return None
    runs = measure(config)
    summary = summarise(runs)
    print(report(config, runs, summary))
    threads = runs["small"][0]["torch_threads"]
    out = write_result("cache_memory", config, {"runs": runs, **summary}, config.out, threads)
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(CacheMemoryConfig, run, argv, prog="python experiments/bench_cache_memory.py")


if __name__ == "__main__":
    raise SystemExit(main())
