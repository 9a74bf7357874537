"""The on-disk activation cache.

``cache_activations(model, transcripts, hooks, tokens)`` (further settings: keyword options
or one :class:`CacheRequest`) runs only the requested hooks, stops
the forward pass after the deepest requested block, batches transcripts of similar length
with left padding, pools each transcript's selected tokens (mean) and streams shards of
``shard_size`` transcripts to disk as safetensors. A JSON manifest records what made the
cache (model fingerprint, dataset hash, hooks, token selection, dtype, library versions).

The cache folder is named by a hash of those inputs, so the same call reuses it without a
forward pass, a different model or dataset never lands in it, and a folder whose manifest
disagrees with the request is refused. Shards are written atomically and the order of
transcripts in shards is deterministic, so an interrupted run resumes at its first missing
shard. Memory holds one shard of vectors at a time, whatever the dataset's size.

Nothing is read that was not written. The manifest (version :data:`MANIFEST_VERSION`) records
each shard's size, rows, a checksum of its header and of each tensor, and the file's stamp
(size, times, inode) when it was written (:class:`ShardRecord`); while a run is under way each
new shard's record waits beside it (``shard-00003.json``) and the manifest gathers them when it
is marked complete. Every read checks each shard's size, safetensors header, tensor dtypes,
shapes and rows, that the shards hold every row exactly once, and, by default, every byte it
reads against its checksum, as it reads it (no extra I/O). Caching checks a kept shard whole
when its stamp changed since it was written. ``verify=True`` (``INTERP_CACHE_VERIFY=1``,
``--verify``) checks every shard whole; ``verify=False`` (``INTERP_CACHE_VERIFY=0``,
``--no-verify``) compares no checksum (:class:`~interp.cache.key.Verify`). Reading a damaged
cache raises :class:`CacheIntegrityError` naming the file and the fix; caching reports it
(:class:`CacheRepairWarning`) and writes it again, as it does a shard without a record (a cut
write), a shard planned with another shard size, and leftovers of cut writes (``.*.tmp``,
``*.partial``). Readers take the shards the manifest lists, never a glob of the folder. A
writer holds the folder's lock (:mod:`interp.locks`), so a second process waits and then
reuses the cache. A folder of an older manifest version is rebuilt, with a message.

A forward pass holds at most ``batch_size`` transcripts and, with ``batch_tokens``, that many
padded tokens; an out-of-memory error halves both and the run goes on. A per-token cache says
how much disk it will fill before it starts, and no cache starts without the room for it.

The work can be split over processes (``python -m interp.cache`` under torchrun, a SLURM array
or ``--rank``/``--world-size``): shard ``i`` holds the same transcripts whatever the number of
workers, each worker writes its share of the shards beside the others, and a finalize step
checks every shard and completes the manifest (:mod:`~interp.cache.parallel`).

Modules: :mod:`~interp.cache.key` (what identifies a cache, its errors), :mod:`~interp.cache.shards`
(shard files, the manifest and their checks), :mod:`~interp.cache.capture` (the forward passes),
:mod:`~interp.cache.budget` (batch sizes, out-of-memory back-off, disk),
:mod:`~interp.cache.writer` (the shard plan, :class:`~interp.cache.writer.CacheJob`,
:func:`cache_activations`), :mod:`~interp.cache.parallel` (workers and finalize),
:mod:`~interp.cache.config` (:class:`CacheConfig`, the options of ``python -m interp.cache``),
:mod:`~interp.cache.activation_set` (reading).
"""

from interp.cache.activation_set import ActivationSet, load_activation_set
from interp.cache.budget import BatchBackoffWarning, CacheDiskError, CacheMemoryError
from interp.cache.capture import mean_pool, pad_batch
from interp.cache.config import CacheConfig
from interp.cache.key import (
    FORMAT_VERSION,
    MANIFEST,
    MANIFEST_VERSION,
    VERIFY_ENV,
    CacheIncompleteError,
    CacheIntegrityError,
    CacheKey,
    CacheMismatchError,
    CacheRepairWarning,
    Verify,
)
from interp.cache.parallel import finalize, run_cache, write_share
from interp.cache.request import CacheRequest
from interp.cache.shards import ShardRecord
from interp.cache.writer import CacheJob, cache_activations, make_job

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "MANIFEST_VERSION",
    "VERIFY_ENV",
    "ActivationSet",
    "BatchBackoffWarning",
    "CacheConfig",
    "CacheDiskError",
    "CacheIncompleteError",
    "CacheIntegrityError",
    "CacheJob",
    "CacheKey",
    "CacheMemoryError",
    "CacheMismatchError",
    "CacheRepairWarning",
    "CacheRequest",
    "ShardRecord",
    "Verify",
    "cache_activations",
    "finalize",
    "load_activation_set",
    "make_job",
    "mean_pool",
    "pad_batch",
    "run_cache",
    "write_share",
]
