"""What every benchmark under ``experiments/bench_*.py`` shares: timing on any device, and one
result file per benchmark.

:func:`write_result` writes ``<cache>/benchmarks/<name>.json`` (or a given path) holding the
benchmark's name, its resolved settings, what it measured (raw timings included), the torch
threads it ran with, the library versions (:func:`interp.artifacts.library_versions`), the
platform and the time. Importing this module loads nothing but the standard library.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from interp.artifacts import library_versions, write_json_atomic
from interp.paths import cache_root


def sync(device: Any) -> None:
    """Wait for the kernels queued on ``device`` (a ``torch.device``), so that wall-clock time
    covers the work itself."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], Any], device: Any) -> float:
    """Seconds that ``fn()`` takes on ``device``, queued kernels included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def _settings(config: Any) -> dict[str, Any]:
    """A config dataclass (or mapping) as JSON-ready settings; fields whose names start with
    ``child`` (a benchmark's internal subprocess flags) are left out."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in values.items()
        if not k.startswith("child")
    }


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")  # not imported just to ask
    return torch.get_num_threads() if torch is not None else None


def write_result(
    name: str,
    config: Any,
    result: Mapping[str, Any],
    out: str | Path | None = None,
    threads: int | None = None,
    versions: Mapping[str, str] | None = None,
) -> Path:
    """Write one benchmark's result to ``out`` (default ``<cache>/benchmarks/<name>.json``):
    ``benchmark``, ``config`` (the resolved settings), everything in ``result``, then
    ``threads`` (torch's CPU threads in the measuring process; default: this process's),
    ``versions`` (plus any given, e.g. scikit-learn's), ``platform`` and ``time``. Returns
    the path written."""
    path = Path(out) if out else cache_root() / "benchmarks" / f"{name}.json"
    data = {
        "benchmark": name,
        "config": _settings(config),
        **result,
        "threads": threads if threads is not None else _torch_threads(),
        "versions": {**library_versions(), **(versions or {})},
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(path, data)
    return path
