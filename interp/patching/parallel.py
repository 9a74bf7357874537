"""A patching sweep split over workers, merged into the result one process would give.

The work items are the sweep's forward passes (:attr:`interp.patching.Sweep.chunks`, a plan
that depends only on the sweep's settings), so every patch is computed in the same batch
whichever worker runs it. Worker ``rank`` of ``world_size`` (:func:`interp.workers.worker_split`:
arguments, torchrun, SLURM) runs chunks ``rank, rank + world_size, ...`` that no part on disk
holds yet and writes them, atomically, as ``part-<rank>-of-<world_size>.json`` in the sweep's
folder, sealed with the checksum of its contents. The merge reads every part there, refuses
one written by another sweep (other models, prompts, metric, sites, layers, columns or plan)
and one that is damaged or was edited (it does not match its checksum), naming the file and
the fix, and builds the result:

- under torchrun, worker 0 merges after a barrier;
- a SLURM array's tasks, or workers started by hand, cannot wait for each other: once they
  have all ended, running the same sweep alone (no rank, world size 1) computes whatever no
  part holds (nothing, unless a worker crashed) and merges.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.artifacts import (
    blake2b_hex,
    check_same,
    check_seal,
    read_json,
    seal,
    warn_unchecked,
    write_json_atomic,
)
from interp.patching.result import PatchResult
from interp.patching.segments import PatchError
from interp.patching.sweep import Sweep
from interp.workers import WorkerSplit, barrier, under_torchrun, worker_split

PART_PATTERN = "part-*-of-*.json"


def sweep_identity(sweep: Sweep) -> dict[str, Any]:
    """Everything a part's values depend on; parts of one sweep must agree on all of it."""
    return {
        "target_model": sweep.target.name,
        "target_fingerprint": sweep.target.fingerprint,
        "source_model": sweep.source.name,
        "source_fingerprint": sweep.source.fingerprint,
        "target_tokens": sweep.target_input.tokens.tolist(),
        "source_tokens": sweep.source_input.tokens.tolist(),
        "metric": sweep.metric.describe(),
        "sites": list(sweep.sites),
        "layers": list(sweep.layers),
        "columns": [
            [c.label, list(c.target_positions), list(c.source_positions)] for c in sweep.columns
        ],
        "batch_size": sweep.batch_size,
        "plan": blake2b_hex(json.dumps(sweep.chunks).encode()),
        "chunks": len(sweep.chunks),
    }


def sweep_key(sweep: Sweep) -> str:
    """A short name for the sweep's settings (a folder name that differs between sweeps)."""
    return blake2b_hex(json.dumps(sweep_identity(sweep), sort_keys=True).encode())[:16]


def part_path(folder: str | Path, split: WorkerSplit) -> Path:
    return Path(folder) / f"part-{split.rank}-of-{split.world_size}.json"


#: The fix of a damaged part: its passes are computed again.
REDO = "delete it; the next run of the sweep computes its passes again"


def read_part(path: Path) -> dict[str, Any]:
    """One part file, checked: valid JSON with its sweep, chunks and values, matching the
    checksum it carries (a part written before parts carried one is read with a warning)."""
    part = read_json(path, error=PatchError, fix=REDO)
    if not isinstance(part, dict) or not {"sweep", "chunks", "values"} <= set(part):
        raise PatchError(f"{path} is not a part of a patching sweep; {REDO}")
    if not check_seal(part, where=path, fix=REDO, error=PatchError):
        warn_unchecked(path, f"{REDO} to record it")
    chunks, values = part["chunks"], part["values"]
    if not isinstance(chunks, list) or not isinstance(values, list) or len(chunks) != len(values):
        raise PatchError(f"{path}: 'chunks' and 'values' are not two lists of one length; {REDO}")
    return part


def read_parts(sweep: Sweep, folder: str | Path) -> dict[int, list[float]]:
    """Chunk -> values of every part in ``folder``; a part of another sweep raises
    :class:`PatchError` naming it and what differs, and so does a damaged or edited part."""
    identity = sweep_identity(sweep)
    done: dict[int, list[float]] = {}
    for path in sorted(Path(folder).glob(PART_PATTERN)):
        part = read_part(path)
        check_same(
            part["sweep"],
            identity,
            where=path,
            fix=f"it is a part of another patching sweep: delete {folder}, or give this sweep "
            "its own folder",
            error=PatchError,
        )
        for chunk, values in zip(part["chunks"], part["values"], strict=True):
            done.setdefault(int(chunk), values)
    return done


def run_part(
    sweep: Sweep, folder: str | Path, split: WorkerSplit, progress: bool = False
) -> list[int]:
    """Run this worker's chunks that no part in ``folder`` holds and write them (with any
    chunks this worker's part already held) to its part. Returns the chunks run."""
    done = read_parts(sweep, folder)
    todo = [c for c in split.items(len(sweep.chunks)) if c not in done]
    if not todo:
        return []
    path = part_path(folder, split)
    kept: dict[int, list[float]] = {}
    if path.exists():
        old = read_part(path)
        kept = {int(c): v for c, v in zip(old["chunks"], old["values"], strict=True)}
    for chunk in tqdm(todo, desc="patching", unit="pass", disable=not progress):
        kept[chunk] = sweep.run_chunk(chunk).tolist()
    part = {
        "sweep": sweep_identity(sweep),
        "rank": split.rank,
        "world_size": split.world_size,
        "chunks": sorted(kept),
        "values": [kept[c] for c in sorted(kept)],
    }
    write_json_atomic(path, seal(part))  # the checksum of its contents rides along
    return todo


def merge_parts(sweep: Sweep, folder: str | Path) -> PatchResult:
    """The sweep's result from the parts in ``folder``; :class:`PatchError` if any chunk is
    in no part yet (naming how to compute it)."""
    done = read_parts(sweep, folder)
    missing = [c for c in range(len(sweep.chunks)) if c not in done]
    if missing:
        raise PatchError(
            f"{folder}: {len(missing)} of the sweep's {len(sweep.chunks)} forward passes are in "
            f"no part yet (passes {missing[:8]}{' ...' if len(missing) > 8 else ''}); wait for "
            "every worker to end, then run the sweep again alone (without rank and world size) "
            "to compute what is missing and merge"
        )
    return sweep.result({c: torch.tensor(v, dtype=torch.float32) for c, v in done.items()})


def split_sweep(
    sweep: Sweep,
    folder: str | Path,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = False,
) -> PatchResult | None:
    """Run ``sweep`` as worker ``rank`` of ``world_size`` (default: torchrun's or SLURM's,
    else alone), writing its part under ``folder``. Returns the merged result where this
    process merges (alone, or worker 0 under torchrun once every worker wrote its part), else
    None."""
    split = worker_split(rank, world_size)
    run_part(sweep, folder, split, progress and split.is_main)
    if not split.distributed:
        return merge_parts(sweep, folder)
    if under_torchrun():
        barrier(split)
        return merge_parts(sweep, folder) if split.is_main else None
    return None
