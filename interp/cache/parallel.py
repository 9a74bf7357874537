"""Caching split over processes: each worker writes its share of the shards, one finalize
step checks them all and completes the manifest.

A work item is a shard of the plan (:class:`~interp.cache.writer.Plan`): transcripts sorted by
token count and cut every ``shard_size``, so shard ``i`` holds the same transcripts whatever
the number of workers. Worker ``k`` of ``W`` (:func:`interp.workers.worker_split`: flags,
torchrun, a SLURM array or SLURM tasks) takes shards ``k, k + W, ...``, keeps each one already
on disk that passes its checks and writes the others atomically, each with its record.

Locks (:mod:`interp.locks`): workers hold the folder's lock *shared*, so ``W`` of them write
their disjoint shards at once, and take the plan lock in turn only to read the manifest; the
first to arrive writes it (incomplete, with the shard size every worker then plans with).
Finalize holds the folder's lock alone, like a single-process run, so it never overlaps a
worker: it removes leftovers of cut writes, checks every shard (size, header, dtypes, shapes,
rows, the cache key named in its header, checksums as :class:`~interp.cache.key.Verify` says)
and writes the complete manifest. It changes nothing in a complete cache (run it twice: the
second run only checks), and refuses a shard of another cache or a missing one: the missing
shards are named, and running the workers again writes only those.

Under torchrun each worker of a node runs on its own GPU (``cuda:$LOCAL_RANK``, with
``--device auto`` or ``cuda``), and worker 0 finalizes after a gloo barrier
(:func:`interp.workers.barrier`); the tasks of a SLURM array cannot wait for each other, so
there finalize is a separate command (``--finalize``) run once every task has ended. One
worker alone (``W = 1``) runs the job of :func:`~interp.cache.writer.cache_activations`, under
the folder's lock alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch

from interp.cache.config import CacheConfig
from interp.cache.writer import CacheJob, ShareReport, make_job
from interp.config import model_options
from interp.data.datasets import load_dataset, subset_groups
from interp.data.transcripts import Transcript
from interp.hooks import CONTROL_HOOK, parse_hook_name
from interp.locks import folder_lock
from interp.models import load_model
from interp.workers import WorkerSplit, barrier, close, under_torchrun, worker_split

#: How long torchrun workers wait at the barrier for the slowest one (a resumed run's workers
#: whose shares are already on disk wait for the others' whole run).
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class CacheOutcome:
    """What a run of :func:`run_cache` did: this worker's ``share`` (None for ``--finalize``
    and for a single process), whether the cache in ``folder`` is complete (``n_shards``
    checked), and the ``seconds`` it took after the model was loaded."""

    split: WorkerSplit
    folder: Path
    n_transcripts: int
    share: ShareReport | None
    complete: bool
    n_shards: int | None = None
    seconds: float = 0.0


def write_share(job: CacheJob, split: WorkerSplit) -> ShareReport:
    """Write the missing shards of ``split``'s share, beside the other workers."""
    with folder_lock(job.folder, shared=True):
        return job.write_share(split)


def finalize(job: CacheJob) -> int:
    """Check every shard of ``job`` and mark its cache complete (see the module docstring);
    returns the number of shards. Raises :class:`~interp.cache.key.CacheIncompleteError`
    naming the shards still missing."""
    with folder_lock(job.folder):
        return job.finalize()


def read_transcripts(config: CacheConfig) -> list[Transcript]:
    """The transcripts of ``config``, as the probe pipeline reads its training set (the same
    ``--max-scenarios`` subset), so both ask for the same cache."""
    transcripts = load_dataset(config.dataset)
    if config.max_scenarios is not None:
        transcripts = subset_groups(transcripts, config.max_scenarios, config.seed)
    return transcripts


def worker_device(config: CacheConfig) -> str:
    """The device of this worker: under torchrun with ``--device auto`` or ``cuda`` (and no
    device map), GPU ``LOCAL_RANK`` of the node, so each worker of a node has its own GPU;
    otherwise ``config.device`` (a SLURM task sees only the GPUs it was given)."""
    local = os.environ.get("LOCAL_RANK")
    if (
        local is None
        or not under_torchrun()
        or config.device not in ("auto", "cuda")
        or config.device_map != "none"
        or not torch.cuda.is_available()
    ):
        return config.device
    return f"cuda:{int(local) % torch.cuda.device_count()}"


def job_for(config: CacheConfig, split: WorkerSplit) -> CacheJob:
    """Read the data, load the model and make the job of ``config`` (bad input fails before
    the model loads). Only the blocks up to the deepest hook are loaded, as the probe loads
    them, so the cache key (which records the blocks loaded) is the probe's."""
    transcripts = read_transcripts(config)
    hooks = config.hook_names(CONTROL_HOOK)
    deepest = max(parse_hook_name(h)[0] for h in hooks)
    options = {**model_options(config), "device": worker_device(config)}
    model = load_model(config.model, **options, max_layer=deepest)
    return make_job(model, transcripts, hooks, config.request(progress=split.is_main))


def _as_worker(job: CacheJob, split: WorkerSplit) -> CacheOutcome:
    """Write this worker's share; under torchrun, worker 0 then finalizes after the barrier."""
    started = time.perf_counter()
    share = write_share(job, split)
    n_shards: int | None = None
    if under_torchrun():
        barrier(split, timeout=BARRIER_TIMEOUT)
        try:
            if split.is_main:
                n_shards = finalize(job)
        finally:
            close(split)
    n, seconds = len(job.transcripts), time.perf_counter() - started
    return CacheOutcome(split, job.folder, n, share, n_shards is not None, n_shards, seconds)


def run_cache(config: CacheConfig) -> CacheOutcome:
    """Run ``config``: finalize only (``finalize``), the whole job in one process, or this
    worker's share of a split job (see the module docstring)."""
    split = worker_split(config.rank, config.world_size)
    job = job_for(config, split)
    n, started = len(job.transcripts), time.perf_counter()
    if config.finalize:
        n_shards = finalize(job)
    elif split.distributed:
        return _as_worker(job, split)
    else:
        with folder_lock(job.folder):
            n_shards = len(job.run().shards)
    seconds = time.perf_counter() - started
    return CacheOutcome(split, job.folder, n, None, True, n_shards, seconds)


def describe(config: CacheConfig, outcome: CacheOutcome) -> str:
    """The lines ``python -m interp.cache`` prints about ``outcome``."""
    split, share, lines = outcome.split, outcome.share, []
    if share is not None:
        lines.append(
            f"worker {split.rank} of {split.world_size} ({split.source}): wrote "
            f"{share.written} of its {share.assigned} shards ({share.n_shards} in the plan) "
            f"in {share.seconds:.1f} s"
        )
    if outcome.complete:
        lines.append(
            f"cache complete: {outcome.n_transcripts} transcripts in {outcome.n_shards} shards "
            f"at {outcome.folder} ({outcome.seconds:.1f} s)"
        )
    elif split.is_main or not under_torchrun():
        lines.append(
            "not finalized yet: once every worker has ended, run the same command with "
            "--finalize (and without --rank/--world-size)"
        )
    return "\n".join(lines)
