"""Benchmark: does caching, or fitting a probe, need more memory for more transcripts? And can
a probe be fitted on a cache larger than the memory the process may use?

Three measurements, each in fresh Python subprocesses (``sys.executable`` running this file
with ``--child``), so one run's peak cannot leak into another's:

1. **caching** (:func:`interp.cache.cache_activations`), one residual hook of ``--large`` and
   ``--small`` transcripts on the model (default the tiny random 2-layer model, hook
   ``blocks.0.hook_resid_post``, ``tokens=answer``, shard size 256, batch size 16). Before
   the measured call: load the model, build the transcripts, run a warm-up cache of one batch
   (so one-time allocations are not counted), reset the kernel's peak-RSS mark
   (``/proc/self/clear_refs``) and read the baseline ``ru_maxrss``.
2. **fitting** on each size's cache (kept from step 1): open it (lazily,
   :func:`interp.cache.load_activation_set`), choose C by group cross-validation over the
   training scenarios and fit the final logistic probe as the pipeline does
   (:class:`interp.probe.pipeline.ProbeFitter`), then score the held-out rows. The fit's
   memory budget is ``--fit-budget-mib``: 0 (the default) streams the hook from disk
   (:mod:`probes.streaming`) as the pipeline does for a cache too large for its budget;
   2048 is the pipeline's default, under which these tiny caches are fitted in memory.
   The baseline is read after the model and the labels are loaded.
3. **out of core**: a synthetic cache of ``--big-gb`` GiB (one hook of width ``--big-dim``,
   written in the cache's format by :func:`write_synthetic_cache`, labels from a planted
   direction) is fitted (logistic, C = 1, and mean difference) by a child whose data segment
   is limited to ``--limit-gb`` GiB with ``resource.setrlimit(RLIMIT_DATA)``, which since
   Linux 4.7 counts every private writable mapping (heap and anonymous mmaps; not the
   read-only file mappings through which shards are read). ``RLIMIT_AS`` is not used: it also
   counts address space reserved and never touched, which torch and glibc reserve freely. The
   child's peak RSS (``ru_maxrss``, file-backed shard pages included) is reported beside the
   limit. A second child without a limit fits the same rows in memory (``acts[hook]``,
   ``LogisticProbe.fit``, ``MeanDiffProbe.fit``; about 5x the cache's size of memory: skipped,
   with a message, when less memory is available); the two directions are compared by
   :func:`probes.streaming.direction_difference` (Euclidean distance of the unit directions;
   target below 1e-5).

Ratios: for caching and for fitting, the medians over ``--repeats`` (3, in alternating order)
of the peak RSS of the whole process, ``large/small`` (target <= 1.2), and of the peak
increase over the baseline (the part that can grow with the transcripts; differences of a few
tens of MiB are within the noise of identical runs: allocator and tokenizer threads).

The children use one torch thread by default (``--threads 1``; ``--threads 0`` keeps torch's
own choice): time is not what is measured.

Run: ``python experiments/bench_cache_memory.py`` (caching 20,000 tiny-model transcripts three
times dominates: tens of minutes on a busy 2-core CPU); ``--big-gb 0`` skips the out-of-core
check; ``--model smollm2-135m-instruct`` measures the real model (much slower on a CPU).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import shutil
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
GIB = 1024 * MIB
#: The hook of the synthetic out-of-core cache.
SYNTHETIC_HOOK = "blocks.0.hook_resid_post"
#: Bytes of memory the in-memory reference fit needs per byte of cache (float32 rows, float64
#: standardised copy and temporary), with room to spare.
REFERENCE_FACTOR = 6


@dataclass
class CacheMemoryConfig:
    """Peak memory of caching and of fitting for a large vs a small transcript set, and a
    probe fit on a cache larger than the process's memory limit."""

    model: str = field(default="tiny-random", metadata={"help": "model spec, as for load_model"})
    layer: int | None = field(
        default=None,
        metadata={
            "help": "block whose resid_post is cached",
            "default_text": "min(14, n_layers - 2)",
        },
    )
    large: int = field(default=20_000, metadata={"help": "transcripts in the large run"})
    small: int = field(default=2_000, metadata={"help": "transcripts in the small run"})
    tokens: str = field(
        default="answer",
        metadata={"help": "token selection", "choices": ("answer", "reply", "last")},
    )
    batch_size: int = field(default=16, metadata={"help": "transcripts per forward pass"})
    shard_size: int = field(default=256, metadata={"help": "pooled vectors per shard"})
    max_tokens: int = field(default=1024, metadata={"help": "longer transcripts cut from left"})
    repeats: int = field(default=3, metadata={"help": "subprocess runs per size (median)"})
    cache_repeats: int | None = field(
        default=None,
        metadata={"help": "caching runs per size", "default_text": "--repeats"},
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, mps"})
    threads: int = field(
        default=1, metadata={"help": "torch CPU threads in the children (0: torch's default)"}
    )
    fit: bool = field(default=True, metadata={"help": "also measure fitting on each cache"})
    fit_budget_mib: int = field(
        default=0,
        metadata={"help": "the fit's in-memory budget (MiB); 0 streams from disk"},
    )
    big_gb: float = field(
        default=2.0, metadata={"help": "GiB of the synthetic out-of-core cache (0 skips it)"}
    )
    big_dim: int = field(default=256, metadata={"help": "width of the synthetic cache"})
    limit_gb: float = field(
        default=1.0, metadata={"help": "GiB of data segment (RLIMIT_DATA) the streamed fit may use"}
    )
    out: str | None = field(
        default=None,
        metadata={"help": "JSON results", "default_text": "<cache>/benchmarks/cache_memory.json"},
    )
    # Set only in the children this script spawns.
    child: int | None = field(default=None, metadata={"hidden": True})
    child_out: str | None = field(default=None, metadata={"hidden": True})
    child_task: str = field(default="cache", metadata={"hidden": True})
    child_dir: str | None = field(default=None, metadata={"hidden": True})

    def __post_init__(self) -> None:
        for name in ("large", "small", "batch_size", "shard_size", "max_tokens", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("big_gb", "fit_budget_mib"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if self.cache_repeats is not None and self.cache_repeats < 1:
            raise ConfigError("--cache-repeats must be >= 1")
        if self.big_dim < 2 or self.limit_gb <= 0:
            raise ConfigError("--big-dim must be >= 2 and --limit-gb > 0")


# --- memory readings ------------------------------------------------------------------------


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


def baseline() -> dict[str, Any]:
    """Collect garbage, reset the peak mark, and read where this process stands."""
    gc.collect()
    was_reset = reset_peak_rss()
    return {
        "peak_reset": was_reset,
        "rss_before_bytes": current_rss_bytes(),
        "baseline_peak_rss_bytes": peak_rss_bytes(),
    }


def peak_since(base: dict[str, Any]) -> dict[str, Any]:
    peak = peak_rss_bytes()
    return {
        **base,
        "peak_rss_bytes": peak,
        "peak_increase_bytes": peak - base["baseline_peak_rss_bytes"],
    }


def transcripts_for(n: int) -> list[Any]:
    from interp.data.datasets import build_consistency

    pool = build_consistency(per_cell=None)
    out = list(pool[:n])
    copy = 1
    while len(out) < n:  # repeat the list under distinct ids (and scenarios)
        out += [
            dataclasses.replace(t, id=f"{t.id}~{copy}", group=f"{t.group}~{copy}")
            for t in pool[: n - len(out)]
        ]
        copy += 1
    return out


# --- the children ---------------------------------------------------------------------------


def _setup(config: CacheMemoryConfig) -> tuple[Any, str]:
    """Threads, the model and the measured hook of a child."""
    import torch

    from interp.hooks import check_layer, hook_name
    from interp.models import load_model

    if config.threads:
        torch.set_num_threads(config.threads)
    model = load_model(config.model, device=config.device)
    layer = config.layer if config.layer is not None else min(14, max(0, model.n_layers - 2))
    check_layer(layer, model.n_layers)
    return model, hook_name(layer)


def child_cache(config: CacheMemoryConfig) -> dict[str, Any]:
    """Cache ``config.child`` transcripts (into ``child_dir``, kept, or a temporary folder)."""
    import torch

    from interp.cache import cache_activations

    model, hook = _setup(config)
    transcripts = transcripts_for(int(config.child or 0))
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
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(model.device)
        torch.cuda.reset_peak_memory_stats(model.device)
        cuda_base = torch.cuda.memory_allocated(model.device)
    base = baseline()
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        root = Path(config.child_dir or tmp)
        start = time.perf_counter()
        acts = cache_activations(model, transcripts, [hook], cache_dir=root, **kwargs)
        if cuda:
            torch.cuda.synchronize(model.device)
        seconds = time.perf_counter() - start
        shards = sorted(acts.path.glob("shard-*.safetensors"))
        disk = sum(s.stat().st_size for s in shards)
        shape = [len(acts), acts.d_model]
        folder = str(acts.path)
        del acts
    result: dict[str, Any] = {
        "task": "cache",
        "n_transcripts": len(transcripts),
        "model": model.name,
        "hook": hook,
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        **peak_since(base),
        "seconds": seconds,
        "n_shards": len(shards),
        "shard_bytes": disk,
        "pooled_shape": shape,
        "cache_folder": folder,
    }
    if cuda:
        cuda_peak = torch.cuda.max_memory_allocated(model.device)
        result.update(
            cuda_baseline_bytes=cuda_base,
            cuda_peak_bytes=cuda_peak,
            cuda_peak_increase_bytes=cuda_peak - cuda_base,
        )
    return result


def child_fit(config: CacheMemoryConfig) -> dict[str, Any]:
    """Open the cache ``child_dir`` and fit its hook as the pipeline does (C by group
    cross-validation, final probe), then score the held-out rows."""
    import torch

    from interp.cache import load_activation_set
    from interp.data.split import split_transcripts
    from interp.probe.config import ProbeConfig
    from interp.probe.pipeline import ProbeFitter, scores_of

    model, hook = _setup(config)
    transcripts = transcripts_for(int(config.child or 0))
    y = torch.tensor([t.label for t in transcripts])
    groups = [t.group for t in transcripts]
    train, test = split_transcripts(transcripts, 0.25, 0)
    del transcripts
    budget = config.fit_budget_mib * MIB
    probe_config = ProbeConfig(model=config.model, layers=(0,), progress=False)
    base = baseline()
    start = time.perf_counter()
    acts = load_activation_set(str(config.child_dir))
    fitter = ProbeFitter(probe_config, model, acts, y, train, groups, max_in_memory_bytes=budget)
    probe = fitter.fit([hook])[hook]
    scores = scores_of(probe, hook, acts, test, budget)
    seconds = time.perf_counter() - start
    return {
        "task": "fit",
        "n_transcripts": len(y),
        "model": model.name,
        "hook": hook,
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "streamed": fitter.streams(hook),
        "chosen_c": fitter.chosen_c.get(hook),
        "n_scored": len(scores),
        **peak_since(base),
        "seconds": seconds,
    }


def child_big(config: CacheMemoryConfig, limited: bool) -> dict[str, Any]:
    """Fit logistic (C = 1) and mean-difference probes on the synthetic cache ``child_dir``:
    streamed under the data-segment limit, or in memory (the reference); save directions."""
    if limited:  # before torch is imported: everything the process allocates counts
        limit = int(config.limit_gb * GIB)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import torch
    from safetensors.torch import load_file, save_file

    from interp.cache import load_activation_set
    from probes import LogisticProbe, MeanDiffProbe
    from probes.streaming import fit_streaming

    if config.threads:
        torch.set_num_threads(config.threads)
    root = Path(str(config.child_dir))
    y = load_file(root / "labels.safetensors")["y"]
    start = time.perf_counter()
    acts = load_activation_set(next(root.glob("*/manifest.json")).parent)
    rows = torch.arange(len(acts))
    if limited:
        read = lambda r: acts.blocks(SYNTHETIC_HOOK, r)  # noqa: E731
        logistic = fit_streaming(LogisticProbe(c=1.0), read, y, rows)
        mean_diff = fit_streaming(MeanDiffProbe(), read, y, rows)
    else:
        X = acts[SYNTHETIC_HOOK]
        logistic = LogisticProbe(c=1.0).fit(X, y)
        mean_diff = MeanDiffProbe().fit(X, y)
    seconds = time.perf_counter() - start
    name = "streamed" if limited else "in_memory"
    save_file(
        {"logistic": logistic.direction, "mean_diff": mean_diff.direction},
        str(root / f"{name}.safetensors"),
    )
    return {
        "task": name,
        "rlimit_data_bytes": resource.getrlimit(resource.RLIMIT_DATA)[0] if limited else None,
        "peak_rss_bytes": peak_rss_bytes(),
        "seconds": seconds,
        "n_iter": logistic.n_iter,
        "torch_threads": torch.get_num_threads(),
    }


# --- the synthetic out-of-core cache -------------------------------------------------------


def write_synthetic_cache(
    root: Path, n: int, d: int, shard_size: int = 8192, seed: int = 0
) -> tuple[Path, Any]:
    """A complete cache folder under ``root``, in the cache's format (manifest, shards with
    checksums and records, key in each header), holding ``n`` pooled float32 vectors of width
    ``d`` at :data:`SYNTHETIC_HOOK`, in shards whose rows do not follow dataset order, and
    their 0/1 labels from a planted logistic direction (also saved in
    ``root/labels.safetensors``). Written shard by shard: memory holds one shard. Returns
    the folder and the labels."""
    import torch
    from safetensors.torch import save_file

    from interp.artifacts import library_versions, write_json_atomic
    from interp.cache import MANIFEST, MANIFEST_VERSION, CacheKey
    from interp.cache.shards import record_path, write_shard

    gen = torch.Generator().manual_seed(seed)
    centre, scale = 5 * torch.randn(d, generator=gen), 0.5 + 2.5 * torch.rand(d, generator=gen)
    planted = torch.randn(d, generator=gen)
    planted /= planted.norm()
    key = CacheKey(
        model_name="synthetic",
        model_fingerprint=f"synthetic-seed{seed}",
        dataset_hash=f"synthetic-{n}x{d}",
        n_transcripts=n,
        hooks=(SYNTHETIC_HOOK,),
        tokens="last",
        max_tokens=1,
        per_token=False,
        dtype="float32",
    )
    folder = root / key.digest()
    folder.mkdir(parents=True, exist_ok=True)
    order = torch.randperm(n, generator=gen)
    y = torch.zeros(n, dtype=torch.long)
    records = []
    for i, start in enumerate(range(0, n, shard_size)):
        rows = order[start : start + shard_size].sort().values
        noise = torch.randn(len(rows), d, generator=gen)
        y[rows] = (torch.rand(len(rows), generator=gen) < torch.sigmoid(3 * noise @ planted)).long()
        tensors = {
            f"pooled.{SYNTHETIC_HOOK}": centre + scale * noise,
            "index": rows,
            "n_selected": torch.ones(len(rows), dtype=torch.long),
            "answer_found": torch.ones(len(rows), dtype=torch.bool),
            "truncated": torch.zeros(len(rows), dtype=torch.bool),
        }
        records.append(write_shard(folder, i, tensors, key.digest()))
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "status": "complete",
        "key": dataclasses.asdict(key),
        "d_model": d,
        "ids": [f"synthetic-{i}" for i in range(n)],
        "shard_size": shard_size,
        "stop_at_layer": None,
        "versions": library_versions(),
        "shards": [r.to_json() for r in records],
    }
    write_json_atomic(folder / MANIFEST, manifest)
    for record in records:
        record_path(folder, record.name).unlink(missing_ok=True)
    save_file({"y": y}, str(root / "labels.safetensors"))
    return folder, y


# --- the parent: one subprocess per size and repeat ---------------------------------------


def child_argv(
    config: CacheMemoryConfig, n: int, out: Path, task: str = "cache", folder: Path | None = None
) -> list[str]:
    """The flags of a child that runs ``task`` on ``n`` transcripts (a cache kept in, or
    read from, ``folder``) and writes its result to ``out``."""
    argv = ["--child", str(n), "--child-out", str(out), "--child-task", task]
    if folder is not None:
        argv += ["--child-dir", str(folder)]
    names = ("model", "tokens", "batch_size", "shard_size", "max_tokens", "device")
    names += ("fit_budget_mib", "limit_gb", "threads")
    for name in names:
        argv += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    if config.layer is not None:
        argv += ["--layer", str(config.layer)]
    return argv


def spawn(
    config: CacheMemoryConfig, n: int, task: str = "cache", folder: Path | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mem-out-") as tmp:
        out = Path(tmp) / "result.json"
        argv = child_argv(config, n, out, task, folder)
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not out.is_file():
            sys.stderr.write(proc.stdout[-4000:])
            raise RuntimeError(f"{task} child for {n} transcripts failed (exit {proc.returncode})")
        result = json.loads(out.read_text())
        result["process_seconds"] = time.perf_counter() - start
        return result


def measure(
    config: CacheMemoryConfig, task: str, folders: dict[str, Path]
) -> dict[str, list[dict[str, Any]]]:
    """Each size ``repeats`` (caching: ``cache_repeats``) times, in alternating order, each
    run in a fresh subprocess.
    Caching writes each size's first cache into ``folders[label]`` (kept for the fits)."""
    sizes = {"small": config.small, "large": config.large}
    runs: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
    repeats = config.repeats
    if task == "cache" and config.cache_repeats is not None:
        repeats = config.cache_repeats
    for r in range(repeats):
        for label in ("small", "large") if r % 2 == 0 else ("large", "small"):
            print(f"{task} run {r + 1}/{repeats}: {sizes[label]} transcripts...", flush=True)
            keep = task != "cache" or r == 0  # each size's first cache is kept for the fits
            res = spawn(config, sizes[label], task, folders[label] if keep else None)
            runs[label].append(res)
            print(
                f"  peak {res['peak_rss_bytes'] / MIB:.1f} MiB "
                f"(+{res['peak_increase_bytes'] / MIB:.1f} MiB), {res['seconds']:.1f} s measured, "
                f"{res['process_seconds']:.1f} s in all",
                flush=True,
            )
    return runs


def _median(runs: dict[str, list[dict[str, Any]]], label: str, key: str) -> float:
    return statistics.median(r[key] for r in runs[label])


def _ratio(values: dict[str, float]) -> float:
    return values["large"] / values["small"] if values["small"] > 0 else float("nan")


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median peaks and peak increases per size and their ratios (RSS, and CUDA where
    measured)."""
    cuda = "cuda_peak_increase_bytes" in runs["small"][0]
    peak = {label: _median(runs, label, "peak_rss_bytes") for label in runs}
    inc = {label: _median(runs, label, "peak_increase_bytes") for label in runs}
    cuda_inc = (
        {label: _median(runs, label, "cuda_peak_increase_bytes") for label in runs} if cuda else {}
    )
    return {
        "median_peak_rss_bytes": peak,
        "median_peak_increase_bytes": inc,
        "ratio_peak_large_over_small": _ratio(peak),
        "ratio_large_over_small": _ratio(inc),
        "cuda_median_peak_increase_bytes": cuda_inc if cuda else None,
        "cuda_ratio_large_over_small": _ratio(cuda_inc) if cuda else None,
        "target_ratio": 1.2,
        "peak_reset": all(r["peak_reset"] for rs in runs.values() for r in rs),
    }


def report(
    config: CacheMemoryConfig,
    runs: dict[str, list[dict[str, Any]]],
    summary: dict,
    task: str = "caching",
) -> str:
    """The table of medians per size and the ratios."""
    first = runs["small"][0]
    cuda = summary["cuda_median_peak_increase_bytes"] is not None
    inc = summary["median_peak_increase_bytes"]
    sizes = {"small": config.small, "large": config.large}
    lines = [
        "",
        f"{task}: model {first['model']}, hook {first['hook']}, tokens={config.tokens}, "
        f"shard size {config.shard_size}, device {first['device']}, {first['torch_threads']} "
        f"threads; peak reset: {'yes' if summary['peak_reset'] else 'no'}; median of "
        f"{len(runs['small'])}",
    ]
    header = (
        f"{'transcripts':>11} {'base MiB':>9} {'peak MiB':>9} {'+peak MiB':>10}"
        f"{' +CUDA MiB' if cuda else ''} {'seconds':>8}"
    )
    lines += [header, "-" * len(header)]
    for label in ("small", "large"):
        cuda_col = (
            f" {_median(runs, label, 'cuda_peak_increase_bytes') / MIB:>10.1f}" if cuda else ""
        )
        lines.append(
            f"{sizes[label]:>11} {_median(runs, label, 'baseline_peak_rss_bytes') / MIB:>9.1f} "
            f"{_median(runs, label, 'peak_rss_bytes') / MIB:>9.1f} {inc[label] / MIB:>10.1f}"
            f"{cuda_col} {_median(runs, label, 'seconds'):>8.1f}"
        )
    lines.append("")
    if summary["cuda_ratio_large_over_small"] is not None:
        lines.append(f"CUDA peak ratio large/small = {summary['cuda_ratio_large_over_small']:.2f}")
    diff = (inc["large"] - inc["small"]) / MIB
    lines.append(
        f"RATIO large/small = {summary['ratio_peak_large_over_small']:.2f}  ({task}: peak RSS, "
        f"{config.large} vs {config.small} transcripts; target <= 1.2); peak increase ratio "
        f"{summary['ratio_large_over_small']:.2f} (difference {diff:+.1f} MiB)"
    )
    return "\n".join(lines)


def _available_bytes() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def out_of_core(config: CacheMemoryConfig) -> dict[str, Any]:
    """Write the synthetic cache, fit it streamed under the limit and (memory allowing) in
    memory, and compare the directions."""
    from safetensors.torch import load_file

    n = max(2, int(config.big_gb * GIB) // (4 * config.big_dim))
    root = Path(tempfile.mkdtemp(prefix="bench-mem-big-"))
    try:
        start = time.perf_counter()
        folder, _ = write_synthetic_cache(root, n, config.big_dim)
        disk = sum(p.stat().st_size for p in folder.glob("shard-*.safetensors"))
        print(
            f"out of core: wrote {disk / GIB:.2f} GiB ({n} x {config.big_dim}) in "
            f"{time.perf_counter() - start:.0f} s; fitting under RLIMIT_DATA "
            f"{config.limit_gb:g} GiB...",
            flush=True,
        )
        result: dict[str, Any] = {"n": n, "d": config.big_dim, "cache_bytes": disk}
        result["streamed"] = spawn(config, n, "big-streamed", root)
        available = _available_bytes()
        if available is not None and available < REFERENCE_FACTOR * disk:
            result["in_memory"] = None
            result["skipped"] = (
                f"in-memory reference skipped: {available / GIB:.1f} GiB available, it needs "
                f"about {REFERENCE_FACTOR * disk / GIB:.1f} GiB"
            )
            return result
        print("out of core: the in-memory reference fit (no limit)...", flush=True)
        result["in_memory"] = spawn(config, n, "big-in-memory", root)
        streamed = load_file(root / "streamed.safetensors")
        in_memory = load_file(root / "in_memory.safetensors")
        # probes.streaming.direction_difference on the saved unit directions
        result["direction_difference"] = {
            k: float((streamed[k].double() - in_memory[k].double()).norm()) for k in streamed
        }
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report_big(config: CacheMemoryConfig, big: dict[str, Any]) -> str:
    s = big["streamed"]
    lines = [
        "",
        f"out of core: synthetic cache {big['cache_bytes'] / GIB:.2f} GiB ({big['n']} x "
        f"{big['d']}), streamed fit under RLIMIT_DATA {config.limit_gb:g} GiB: peak RSS "
        f"{s['peak_rss_bytes'] / MIB:.0f} MiB, {s['seconds']:.0f} s, {s['n_iter']} Newton steps",
    ]
    if big.get("in_memory") is None:
        lines.append(big.get("skipped", "in-memory reference not run"))
        return "\n".join(lines)
    m = big["in_memory"]
    diff = big["direction_difference"]
    lines.append(
        f"in-memory reference: peak RSS {m['peak_rss_bytes'] / MIB:.0f} MiB, {m['seconds']:.0f} s"
        f"; direction difference logistic {diff['logistic']:.2e}, mean-diff "
        f"{diff['mean_diff']:.2e} (target < 1e-5)"
    )
    return "\n".join(lines)


def run_child(config: CacheMemoryConfig) -> dict[str, Any]:
    task = config.child_task
    if task == "cache":
        return child_cache(config)
    if task == "fit":
        return child_fit(config)
    if task in ("big-streamed", "big-in-memory"):
        return child_big(config, limited=task == "big-streamed")
    raise ConfigError(f"unknown child task {task!r}")


def run(config: CacheMemoryConfig) -> Path | None:
    if config.child is not None:  # in a child: one task, written where the parent reads it
        result = run_child(config)
        Path(str(config.child_out)).write_text(json.dumps(result))
        return None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mem-caches-") as tmp:
        folders = {label: Path(tmp) / label for label in ("small", "large")}
        runs = measure(config, "cache", folders)
        results["cache"] = {"runs": runs, **summarise(runs)}
        print(report(config, runs, results["cache"]))
        if config.fit:
            kept = {label: Path(runs[label][0]["cache_folder"]) for label in runs}
            fit_runs = measure(config, "fit", kept)
            results["fit"] = {"runs": fit_runs, **summarise(fit_runs)}
            print(report(config, fit_runs, results["fit"], "fitting"))
    if config.big_gb > 0:
        results["out_of_core"] = out_of_core(config)
        print(report_big(config, results["out_of_core"]))
    threads = runs["small"][0]["torch_threads"]
    out = write_result("cache_memory", config, results, config.out, threads)
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(CacheMemoryConfig, run, argv, prog="python experiments/bench_cache_memory.py")


if __name__ == "__main__":
    raise SystemExit(main())
