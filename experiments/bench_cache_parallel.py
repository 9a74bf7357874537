"""Benchmark: caching with 2 torchrun workers vs 1, on the CPU, and whether the caches agree.

What is measured: ``torchrun --standalone --nproc-per-node W -m interp.cache ...`` for each
``W`` in ``--workers`` (default 1 and 2), each run into a fresh temporary cache root, on the
same JSONL file of ``--n`` transcripts (``build_consistency(per_cell=None)``, repeated under new
ids when ``--n`` is larger), caching one residual hook of ``--model`` (the tiny random model by
default). Every process gets ``--threads`` torch threads (``OMP_NUM_THREADS``; 1 by default, so
1 worker uses one core and 2 workers two: the comparison is of processes, not of threads).

Two times per run, ``--repeats`` runs per ``W`` in alternating order, medians reported:

- ``wall``: the whole torchrun command, as a user waits for it (each process imports
  transformer-lens and loads the model: seconds that do not shrink with more workers);
- ``caching``: what worker 0 reports after its model is loaded, until the cache is complete
  (with ``W > 1``: its share, the barrier and the finalize step).

``RATIO`` is the time with 1 worker over the time with 2 (for each of wall and caching): 2.0
would be perfect scaling on 2 cores; the aim is ``>= 1.6`` for caching. The shards of every
run are compared byte for byte with those of the first 1-worker run (``bit_identical``):
shard ``i`` holds the same transcripts whatever the number of workers, and each is computed
the same way.

Timings are wall-clock and noisy when other processes share the CPU: the 1-minute load
average is recorded before and after each run (``os.getloadavg``); compare ratios measured in
one run, on a machine as quiet as possible.

Run: ``python experiments/bench_cache_parallel.py`` (about 3 minutes on an idle 2-core CPU);
quick check: ``python experiments/bench_cache_parallel.py --n 64 --repeats 1``.
"""

from __future__ import annotations

import dataclasses
import os
import re
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

ROOT = Path(__file__).resolve().parents[1]
_CACHING = re.compile(r"cache complete: \d+ transcripts in \d+ shards at (\S+) \(([\d.]+) s\)")


@dataclass
class CacheParallelConfig:
    """Time caching with 1 and 2 torchrun workers on the CPU; check the caches are identical."""

    model: str = field(default="tiny-random", metadata={"help": "model spec, as for load_model"})
    hook: str = field(default="blocks.0.hook_resid_post", metadata={"help": "the hook cached"})
    n: int = field(default=2000, metadata={"help": "transcripts cached"})
    workers: tuple[int, ...] = field(
        default=(1, 2), metadata={"help": "worker counts to compare (the first is the base)"}
    )
    repeats: int = field(default=3, metadata={"help": "runs per worker count (median)"})
    threads: int = field(default=1, metadata={"help": "torch threads per worker process"})
    batch_size: int = field(default=16, metadata={"help": "transcripts per forward pass"})
    shard_size: int = field(default=64, metadata={"help": "transcripts per shard (work item)"})
    out: str | None = field(
        default=None,
        metadata={"help": "JSON results", "default_text": "<cache>/benchmarks/cache_parallel.json"},
    )

    def __post_init__(self) -> None:
        for name in ("n", "repeats", "threads", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        if not self.workers or min(self.workers) < 1:
            raise ConfigError("--workers must list worker counts >= 1, e.g. 1,2")


def write_dataset(n: int, path: Path) -> None:
    """``n`` transcripts of ``build_consistency(per_cell=None)``, repeated under new ids."""
    from interp.data.datasets import build_consistency
    from interp.data.transcripts import write_transcripts

    pool = build_consistency(per_cell=None)
    out = list(pool[:n])
    copy = 1
    while len(out) < n:
        out += [
            dataclasses.replace(t, id=f"{t.id}~{copy}", group=f"{t.group}~{copy}")
            for t in pool[: n - len(out)]
        ]
        copy += 1
    write_transcripts(path, out)


def run_once(config: CacheParallelConfig, workers: int, dataset: Path, root: Path) -> dict:
    """One torchrun of ``python -m interp.cache`` with ``workers`` processes."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(config.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
        *(f"--nproc-per-node={workers}", "-m", "interp.cache", "--model", config.model),
        *("--device", "cpu", "--dataset", str(dataset), "--hooks", config.hook),
        *("--batch-size", str(config.batch_size), "--shard-size", str(config.shard_size)),
        *("--cache-dir", str(root), "--no-progress"),
    ]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=os.getcwd())
    wall = time.perf_counter() - started
    found = _CACHING.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"torchrun with {workers} worker(s) failed:\n{done.stderr[-2000:]}")
    return {
        "workers": workers,
        "wall_s": wall,
        "caching_s": float(found.group(2)),
        "folder": found.group(1),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def shard_bytes(folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("shard-*.safetensors"))}


def measure(config: CacheParallelConfig, tmp: Path) -> list[dict]:
    """Every run, worker counts alternating; each run's shards compared with the first's."""
    dataset = tmp / "data.jsonl"
    write_dataset(config.n, dataset)
    runs: list[dict] = []
    reference: dict[str, bytes] | None = None
    for r in range(config.repeats):
        order = config.workers if r % 2 == 0 else tuple(reversed(config.workers))
        for workers in order:
            run = run_once(config, workers, dataset, tmp / f"root-{r}-{workers}")
            shards = shard_bytes(run.pop("folder"))
            reference = shards if reference is None else reference
            run["bit_identical"] = shards == reference
            runs.append(run)
            print(
                f"  run {len(runs)}: {workers} worker(s): wall {run['wall_s']:.1f} s, caching "
                f"{run['caching_s']:.1f} s (load {run['load_before']:.1f})",
                flush=True,
            )
    return runs


def summarise(config: CacheParallelConfig, runs: list[dict]) -> dict[str, Any]:
    median: dict[str, dict[str, float]] = {}
    for kind in ("wall_s", "caching_s"):
        median[kind] = {
            str(w): statistics.median(r[kind] for r in runs if r["workers"] == w)
            for w in config.workers
        }
    base = str(config.workers[0])
    ratios = {
        kind: {w: median[kind][base] / t for w, t in median[kind].items() if w != base}
        for kind in median
    }
    loads = [r[k] for r in runs for k in ("load_before", "load_after")]
    return {
        "median_s": median,
        "ratio_vs_first": ratios,
        "bit_identical": all(r["bit_identical"] for r in runs),
        "load_average_1min": {"min": min(loads), "max": max(loads)},
    }


def report(config: CacheParallelConfig, summary: dict[str, Any]) -> str:
    lines = [
        "",
        f"model {config.model}, {config.n} transcripts, hook {config.hook}, shards of "
        f"{config.shard_size}, {config.threads} torch thread(s) per worker, median of "
        f"{config.repeats}; CPU load average {summary['load_average_1min']['min']:.1f}-"
        f"{summary['load_average_1min']['max']:.1f} on {os.cpu_count()} cores",
        f"{'workers':>8} {'wall s':>8} {'caching s':>10}",
    ]
    for w in config.workers:
        lines.append(
            f"{w:>8} {summary['median_s']['wall_s'][str(w)]:>8.1f} "
            f"{summary['median_s']['caching_s'][str(w)]:>10.1f}"
        )
    for w in config.workers[1:]:
        lines.append(
            f"RATIO {config.workers[0]}/{w} workers: caching "
            f"{summary['ratio_vs_first']['caching_s'][str(w)]:.2f}x, wall "
            f"{summary['ratio_vs_first']['wall_s'][str(w)]:.2f}x (aim: caching >= 1.6x on 2 cores)"
        )
    lines.append(f"caches bit-identical across worker counts: {summary['bit_identical']}")
    return "\n".join(lines)


def run(config: CacheParallelConfig) -> Path:
    from interp.models import load_model

    load_model(config.model, device="cpu")  # one-time conversions happen here, not in a worker
    with tempfile.TemporaryDirectory(prefix="bench-cache-parallel-") as tmp:
        runs = measure(config, Path(tmp))
    summary = summarise(config, runs)
    print(report(config, summary))
    out = write_result(
        "cache_parallel", config, {**summary, "runs": runs}, config.out, threads=config.threads
    )
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        CacheParallelConfig, run, argv, prog="python experiments/bench_cache_parallel.py"
    )


if __name__ == "__main__":
    raise SystemExit(main())
