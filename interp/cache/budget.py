"""How much one forward pass and one cache may take: batches sized by transcripts and tokens,
halved after an out-of-memory error, and the disk a cache will fill, checked before it starts.

The bridge computes attention eagerly (the full ``batch x heads x seq x seq`` score matrix,
whatever attention implementation the Hugging Face model was loaded with), so the memory of a
pass grows with the tokens in the batch, not with its number of transcripts. A :class:`Budget`
caps both: at most ``batch_size`` transcripts and, with ``batch_tokens``, at most that many
padded tokens (rows times the longest row). Batches are cut inside one shard, in the shard's
order, so the budget never changes which transcripts land in which shard; it changes only how
the shard's transcripts are grouped into passes, which moves pooled vectors by float rounding
(left padding with an attention mask makes each row independent of its neighbours).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


class BatchBackoffWarning(UserWarning):
    """A forward pass ran out of memory; the batch was halved and the run goes on."""


class CacheMemoryError(ValueError):
    """One transcript alone does not fit in memory; the message says what to lower."""


class CacheDiskError(ValueError):
    """The cache would not fit on its disk; the message gives the estimate and the fixes."""


#: Error texts of allocators that ran out of memory: CUDA and MPS, and the CPU allocator.
_OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure a smaller batch can avoid: torch's
    ``OutOfMemoryError`` (CUDA), or a ``RuntimeError`` of the MPS or CPU allocator."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, RuntimeError) and any(t in str(err).lower() for t in _OOM_TEXTS)


def free_cached_memory(device: torch.device) -> None:
    """Return the allocator's cached blocks to the device after an out-of-memory error."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


@dataclass
class Budget:
    """Caps on one forward pass: ``batch_size`` transcripts and, when ``batch_tokens`` is set,
    that many padded tokens. :meth:`back_off` lowers both for the rest of the run."""

    batch_size: int
    batch_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "batch_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def take(self, lengths: Sequence[int]) -> int:
        """How many of the next transcripts (their token counts, in order) the next pass
        holds: as many as fit both caps, and at least one."""
        n, width = 0, 0
        for length in lengths[: self.batch_size]:
            wider = max(width, length)
            if n and self.batch_tokens is not None and (n + 1) * wider > self.batch_tokens:
                break
            n, width = n + 1, wider
        return max(n, 1)

    def back_off(self, n: int, width: int, err: BaseException) -> None:
        """After ``err`` (out of memory) on ``n`` transcripts padded to ``width`` tokens: from
        now on at most half as many transcripts and half as many tokens per pass. One
        transcript that does not fit raises :class:`CacheMemoryError`."""
        if n <= 1:
            raise CacheMemoryError(
                f"a single transcript of {width} tokens ran out of memory ({err}); lower "
                "max_tokens (longer transcripts are cut from the left), load the model in "
                "bfloat16 (--dtype bfloat16) or split it over more GPUs (--device-map auto)"
            ) from err
        self.batch_size = max(1, n // 2)
        if self.batch_tokens is not None:
            self.batch_tokens = max(1, n * width // 2)
        warnings.warn(
            f"out of memory on a batch of {n} transcripts x {width} tokens; going on with at "
            f"most {self.batch_size} transcripts"
            + (f" and {self.batch_tokens} tokens" if self.batch_tokens is not None else "")
            + " per forward pass",
            BatchBackoffWarning,
            stacklevel=3,
        )


def cache_bytes(
    n_rows: int, n_tokens: int, d_model: int, n_hooks: int, itemsize: int, per_token: bool
) -> int:
    """About the bytes shards of ``n_rows`` transcripts take on disk: a pooled vector per hook
    and row, with ``per_token`` also one per hook and selected token (``n_tokens`` of them),
    plus each row's statistics (headers are not counted)."""
    vectors = n_rows + (n_tokens if per_token else 0)
    return vectors * d_model * n_hooks * itemsize + n_rows * 4 * 8


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_free_space(folder: Path, needed: int) -> int:
    """Refuse (:class:`CacheDiskError`) to start writing ``needed`` bytes into ``folder`` when
    its disk has less free; returns the free bytes."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise CacheDiskError(
            f"the cache needs about {format_bytes(needed)} more on disk, but {folder} has "
            f"{format_bytes(free)} free: free some space, point the cache elsewhere "
            "(--cache-dir), or store less (a shorter token selection such as --tokens last, "
            "a lower --max-tokens, --store-dtype bfloat16, or pooled vectors only)"
        )
    return free
