"""Benchmark: what does checking every byte read from the activation cache cost?

Reads of the activation cache check each tensor's bytes against its checksum as they are
read (``interp.cache.shards``: one XXH3-128 checksum per header and per tensor). This script
times the same reads with checksums off (``verify=False``, the baseline), with the default
(check what is read) and with ``verify=True`` (check every shard whole on opening), in the
same run, and prints their ratios:

- ``open``: :func:`interp.cache.load_activation_set` (manifest, every shard's header, row
  index and statistics);
- ``read_one``: opening, then reading one hook's ``[n, d_model]`` matrix (``acts[hook]``), as
  a probe of one layer does; the other hooks' bytes are not touched;
- ``read_all``: opening, then reading every hook, as ``python -m interp.probe --layer 14``
  does (its layer and the layer-0 control);
- ``reuse``: what :func:`interp.cache.cache_activations` checks before it reuses a complete
  cache (each shard whole only when its file stamp changed since it was written; here none
  did, so this is the headers), against ``reuse/copied``: the same check on a copy of the
  folder (other inodes, so every shard is hashed whole, as after any change to its files).

It also times the two checksums on the same bytes in memory (BLAKE2b, which the cache used
before, and XXH3-128), to show what the hash itself costs against reading.

The cache is either a synthetic one of ``--gib`` GiB written in the cache's own format
(:func:`interp.cache.shards.write_shard`; ``--hooks`` hooks of ``--dim`` float32 values per
row, shards of ``--shard-rows`` rows), or, with ``--folder``, an existing complete cache (the
main job's: ``cache/activations/<key>/`` after ``python -m interp.probe --layer 14``). Files
are read once before timing, so every mode reads from the page cache (a warm cache; on a cold
disk, reading dominates more and the checksums matter less). Modes run in turn, their order
rotated each repeat; the median of ``--repeats`` is reported. Timings are wall-clock on a
shared machine: compare ratios from one run only.

Run: ``python experiments/bench_verify_cost.py`` (a 2 GiB cache, 3 repeats: a few minutes);
``python experiments/bench_verify_cost.py --folder cache/activations/<key>`` for the main
job's cache; quick check: ``--gib 0.01 --repeats 1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.benchmarks import write_result
from interp.cli import run_cli
from interp.config import ConfigError, check_number

MODES = {"off": False, "default": None, "full": True}


@dataclass
class VerifyCostConfig:
    """Time cache reads with checksums off, on what is read (the default), and whole."""

    gib: float = field(default=2.0, metadata={"help": "size of the synthetic cache, in GiB"})
    dim: int = field(default=576, metadata={"help": "values per row and hook (SmolLM2: 576)"})
    hooks: int = field(default=2, metadata={"help": "hooks in the synthetic cache"})
    shard_rows: int = field(default=8192, metadata={"help": "rows per synthetic shard"})
    folder: str | None = field(
        default=None,
        metadata={
            "help": "time this complete cache folder instead of a synthetic one",
            "default_text": "a synthetic cache in a temporary folder",
        },
    )
    repeats: int = field(default=3, metadata={"help": "timed repeats of each mode"})
    out: str | None = field(
        default=None,
        metadata={
            "help": "result JSON path",
            "default_text": "<cache>/benchmarks/verify_cost.json",
        },
    )

    def __post_init__(self) -> None:
        check_number("gib", self.gib, low=1e-4, high=64)
        for name in ("dim", "hooks", "shard_rows", "repeats"):
            check_number(name, getattr(self, name), low=1, integer=True)
        if self.folder is not None and not (Path(self.folder) / "manifest.json").is_file():
            raise ConfigError(
                f"--folder {self.folder} is not a cache folder (no manifest.json); give "
                "cache/activations/<key> after python -m interp.probe --layer 14"
            )


SYNTHETIC_HOOK = "blocks.{}.hook_resid_post"


def write_synthetic(root: Path, config: VerifyCostConfig) -> Path:
    """A complete cache of about ``config.gib`` GiB in the cache's format, written shard by
    shard (memory holds one shard)."""
    import torch

    from interp.artifacts import library_versions, write_json_atomic
    from interp.cache import MANIFEST, MANIFEST_VERSION, CacheKey
    from interp.cache.shards import record_path, write_shard

    hooks = tuple(SYNTHETIC_HOOK.format(i) for i in range(config.hooks))
    n = max(1, int(config.gib * 2**30 / (config.dim * 4 * config.hooks)))
    key = CacheKey(
        model_name="synthetic",
        model_fingerprint="bench-verify-cost",
        dataset_hash=f"synthetic-{n}x{config.dim}",
        n_transcripts=n,
        hooks=hooks,
        tokens="answer",
        max_tokens=1,
        per_token=False,
        dtype="float32",
    )
    folder = root / key.digest()
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    records = []
    for i, start in enumerate(range(0, n, config.shard_rows)):
        rows = torch.arange(start, min(n, start + config.shard_rows))
        tensors = {f"pooled.{h}": torch.randn(len(rows), config.dim, generator=gen) for h in hooks}
        tensors["index"] = rows
        for stat in ("n_selected", "answer_found", "truncated"):
            tensors[stat] = torch.ones(len(rows), dtype=torch.long)
        records.append(write_shard(folder, i, tensors, key.digest()))
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "status": "complete",
        "key": dataclasses.asdict(key),
        "d_model": config.dim,
        "ids": [f"t{i}" for i in range(n)],
        "shard_size": config.shard_rows,
        "stop_at_layer": None,
        "versions": library_versions(),
        "shards": [r.to_json() for r in records],
    }
    write_json_atomic(folder / MANIFEST, manifest)
    for record in records:
        record_path(folder, record.name).unlink(missing_ok=True)
    return folder


def _shard_paths(folder: Path) -> list[Path]:
    from interp.cache.shards import read_manifest, read_records

    return [folder / r.name for r in read_records(read_manifest(folder), folder)]


def _open(folder: Path, verify: bool | None) -> Any:
    from interp.cache import load_activation_set

    return load_activation_set(folder, verify=verify)


def _reuse(folder: Path) -> Any:
    """The check :func:`interp.cache.cache_activations` makes before reusing a cache."""
    from interp.cache.activation_set import load_complete
    from interp.cache.key import CacheKey, Verify
    from interp.cache.shards import read_manifest

    manifest = read_manifest(folder)
    key = CacheKey.from_json(manifest["key"])
    return load_complete(folder, manifest, key, Verify.READ, caching=True)


def _read_all(acts: Any) -> list[Any]:
    return [acts.read(hook) for hook in acts.hooks]


def _tasks(folder: Path, copied: Path) -> dict[str, Callable[[], Any]]:
    """Each timed task, by name (``<what>/<mode>``)."""
    first = _open(folder, False).hooks[0]
    tasks: dict[str, Callable[[], Any]] = {}
    for mode, verify in MODES.items():
        tasks[f"open/{mode}"] = lambda v=verify: _open(folder, v)
        tasks[f"read_one/{mode}"] = lambda v=verify: _open(folder, v).read(first)
        tasks[f"read_all/{mode}"] = lambda v=verify: _read_all(_open(folder, v))
    tasks["reuse/stamped"] = lambda: _reuse(folder)
    tasks["reuse/copied"] = lambda: _reuse(copied)
    return tasks


def _hash_speeds(paths: Sequence[Path], repeats: int) -> dict[str, float]:
    """GiB/s of reading the shard files (from the page cache) and of each checksum over the
    same bytes in memory; one file in memory at a time, median of ``repeats`` passes."""
    import xxhash

    hashes: dict[str, Callable[[bytes], str]] = {
        "blake2b": lambda b: hashlib.blake2b(b, digest_size=32).hexdigest(),
        "xxh3_128": xxhash.xxh3_128_hexdigest,
    }
    total = sum(p.stat().st_size for p in paths)
    passes: dict[str, list[float]] = {name: [] for name in ("read_bytes", *hashes)}
    for _ in range(repeats):
        seconds = dict.fromkeys(passes, 0.0)
        for path in paths:
            start = time.perf_counter()
            blob = path.read_bytes()
            seconds["read_bytes"] += time.perf_counter() - start
            for name, fn in hashes.items():
                start = time.perf_counter()
                fn(blob)
                seconds[name] += time.perf_counter() - start
        for name, value in seconds.items():
            passes[name].append(value)
    return {name: total / 2**30 / statistics.median(t) for name, t in passes.items()}


def measure(folder: Path, copied: Path, repeats: int) -> dict[str, Any]:
    """Median seconds of every task (order rotated each repeat) and the checksum speeds."""
    tasks = _tasks(folder, copied)
    names = list(tasks)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            tasks[name]()
            times[name].append(time.perf_counter() - start)
    paths = _shard_paths(folder)
    return {
        "shards": len(paths),
        "bytes": sum(p.stat().st_size for p in paths),
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "times_s": times,
        "gib_per_s": _hash_speeds(paths, repeats),
    }


def _ratios(median: dict[str, float]) -> dict[str, float]:
    out = {}
    for what in ("open", "read_one", "read_all"):
        for mode in ("default", "full"):
            out[f"{what}/{mode}"] = median[f"{what}/{mode}"] / median[f"{what}/off"]
    out["reuse/copied"] = median["reuse/copied"] / median["reuse/stamped"]
    return out


def _report(result: dict[str, Any]) -> None:
    median, ratios = result["median_s"], result["ratios"]
    print(f"cache: {result['shards']} shards, {result['bytes'] / 2**30:.3f} GiB ({result['kind']})")
    for name, seconds in median.items():
        print(f"  {name:18s} {seconds:9.4f} s")
    speeds = result["gib_per_s"]
    print(
        f"GiB/s in memory: read_bytes {speeds['read_bytes']:.2f}, blake2b "
        f"{speeds['blake2b']:.2f}, xxh3_128 {speeds['xxh3_128']:.2f}"
    )
    for name, ratio in ratios.items():
        print(f"RATIO {name} = {ratio:.3f}")
    print(f"load average (1, 5, 15 min) at start {result['load_average']['start']}")


def run(config: VerifyCostConfig) -> Path:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        if config.folder is not None:
            folder, kind = Path(config.folder), "existing cache"
        else:
            folder, kind = write_synthetic(Path(tmp) / "cache", config), "synthetic"
        copied = Path(tmp) / "copy" / folder.name
        shutil.copytree(folder, copied)
        for path in _shard_paths(folder):  # warm the page cache: every mode reads from memory
            path.read_bytes()
        load = list(os.getloadavg())
        result = {"kind": kind, "folder": str(folder), **measure(folder, copied, config.repeats)}
    result["load_average"] = {"start": load, "end": list(os.getloadavg())}
    result["ratios"] = _ratios(result["median_s"])
    _report(result)
    return write_result("verify_cost", config, result, config.out)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(VerifyCostConfig, run, argv, prog="python experiments/bench_verify_cost.py")


if __name__ == "__main__":
    raise SystemExit(main())
