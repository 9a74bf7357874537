"""Which share of a job this process does, when many processes split one job.

A job is a list of work items numbered ``0..n-1`` (activation-cache shards, patching-sweep
cells). Worker ``rank`` of ``world_size`` takes items ``rank, rank + world_size, ...``, so an
item always lands on the same worker for a given world size, and what an item computes never
depends on who runs it. :func:`worker_split` reads the split from, in order: explicit values
(flags), torchrun's ``RANK``/``WORLD_SIZE``, a SLURM job array
(``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_MIN``/``SLURM_ARRAY_TASK_COUNT``), SLURM tasks
(``SLURM_PROCID``/``SLURM_NTASKS``); alone it is worker 0 of 1.

Under torchrun the workers can wait for each other (:func:`barrier`, a gloo process group
that works on CPU and GPU alike); a SLURM array's tasks cannot, so there the job's finishing
step (writing a manifest, merging results) runs as a separate command once every task ended.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")

#: (rank, world size) variables, most specific launcher first.
_LAUNCHERS = (
    ("torchrun", "RANK", "WORLD_SIZE"),
    ("SLURM array", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
    ("SLURM", "SLURM_PROCID", "SLURM_NTASKS"),
)


class WorkerSplitError(ValueError):
    """A rank/world-size pair that cannot describe a worker (the message names its source)."""


@dataclass(frozen=True)
class WorkerSplit:
    """Worker ``rank`` of ``world_size``; ``source`` says where the numbers came from."""

    rank: int = 0
    world_size: int = 1
    source: str = "single process"

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise WorkerSplitError(
                f"worker {self.rank} of {self.world_size} (from {self.source}) is not a worker: "
                "the rank must be in 0..world_size-1 and world_size at least 1"
            )

    @property
    def is_main(self) -> bool:
        """Worker 0, which runs a job's finishing step under torchrun."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def items(self, n: int) -> range:
        """This worker's item numbers among ``0..n-1``."""
        return range(self.rank, n, self.world_size)

    def mine(self, items: Sequence[T]) -> list[T]:
        """This worker's share of ``items`` (by position)."""
        return [items[i] for i in self.items(len(items))]


def _read_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise WorkerSplitError(f"${name}={env[name]!r} is not an integer") from None


def worker_split(
    rank: int | None = None,
    world_size: int | None = None,
    env: Mapping[str, str] | None = None,
) -> WorkerSplit:
    """This process's worker split: ``rank``/``world_size`` when given (both or neither),
    else the launcher's variables (see the module docstring), else worker 0 of 1."""
    if (rank is None) != (world_size is None):
        raise WorkerSplitError("give both --rank and --world-size, or neither")
    if rank is not None and world_size is not None:
        return WorkerSplit(rank, world_size, "flags")
    env = os.environ if env is None else env
    for source, rank_var, size_var in _LAUNCHERS:
        if rank_var in env and size_var in env:
            found = _read_int(env, rank_var)
            if rank_var == "SLURM_ARRAY_TASK_ID" and "SLURM_ARRAY_TASK_MIN" in env:
                found -= _read_int(env, "SLURM_ARRAY_TASK_MIN")  # arrays may start at 1
            return WorkerSplit(found, _read_int(env, size_var), f"{source} (${rank_var})")
    return WorkerSplit()


def under_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """Whether torchrun started this process (it sets the rendezvous address)."""
    env = os.environ if env is None else env
    return all(k in env for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def barrier(split: WorkerSplit, timeout: timedelta | None = None) -> None:
    """Wait until every torchrun worker reaches this point (a gloo process group, opened on
    first use; ``timeout``: how long its operations wait, torch's default 30 minutes else).
    Alone, or outside torchrun (a SLURM array), it returns at once."""
    if not split.distributed or not under_torchrun():
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            "gloo", rank=split.rank, world_size=split.world_size, timeout=timeout
        )
    dist.barrier()


def close(split: WorkerSplit) -> None:
    """Close the process group :func:`barrier` opened (if any)."""
    if not split.distributed or not under_torchrun():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
