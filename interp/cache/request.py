"""``CacheRequest``: how one dataset's activations are cached, as one typed value.

:func:`interp.cache.cache_activations` and :func:`interp.cache.make_job` take the model, the
transcripts and the hooks, and everything else as a :class:`CacheRequest`; ``python -m
interp.cache`` makes one from its config (:meth:`interp.cache.config.CacheConfig.request`). So
the options are declared, defaulted and checked in one place. The storage dtype is kept as its
name (``torch.float16`` is read as ``"float16"``), as the cache key records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

#: Dtypes the cached vectors can be stored in.
STORE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class CacheRequest:
    """How activations are cached (everything but the model, the transcripts and the hooks).

    ``tokens``: the token selection pooled per transcript (``answer``, ``reply``, ``last``).
    A forward pass holds at most ``batch_size`` transcripts and, with ``batch_tokens``, at
    most that many padded tokens (both halved after an out-of-memory error). Transcripts
    longer than ``max_tokens`` are cut from the left. ``per_token`` also keeps every selected
    token's vector. ``dtype``: the dtype the vectors are stored in (:data:`STORE_DTYPES`). A
    shard holds ``shard_size`` transcripts, or fewer when ``shard_tokens`` caps its selected
    tokens. ``cache_dir``: the folder the cache folders go in (default
    ``<cache>/activations``). ``verify``: None checks shards changed since they were written,
    True every shard whole, False no checksum (:class:`~interp.cache.key.Verify`).
    """

    tokens: str = "answer"
    batch_size: int = 16
    batch_tokens: int | None = None
    max_tokens: int = 1024
    per_token: bool = False
    dtype: str | torch.dtype = "float32"
    shard_size: int = 256
    shard_tokens: int | None = None
    cache_dir: str | Path | None = None
    progress: bool = True
    verify: bool | None = None

    def __post_init__(self) -> None:
        given = self.dtype
        object.__setattr__(self, "dtype", str(given).removeprefix("torch."))
        if self.dtype not in STORE_DTYPES:
            raise ValueError(
                f"cannot store vectors as {given!r}; choose one of {', '.join(STORE_DTYPES)}"
            )
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        for name, value in (("shard_size", self.shard_size), ("shard_tokens", self.shard_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
