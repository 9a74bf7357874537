"""What identifies an activation cache: :class:`CacheKey` (its hash names the folder), the
errors a cache raises, and the constants of its on-disk format."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from interp.artifacts import (
    check_same,
)

FORMAT_VERSION = 1  # part of the key (so of the folder name): changes what is computed


#: Version of the manifest's layout; a folder of another version is rebuilt when caching.
#: 3: the key records the model's dtype, and each shard names its cache's key in its header.
MANIFEST_VERSION = 3


MANIFEST = "manifest.json"


#: Set to 1 to compare every shard's checksum on each read (as ``verify=True`` does).
VERIFY_ENV = "INTERP_CACHE_VERIFY"


READ_FIX = "run cache_activations with the same inputs to rebuild it, or delete the folder"


class CacheMismatchError(ValueError):
    """A cache folder that belongs to another model, dataset, hook set or token selection."""


class CacheIntegrityError(CacheMismatchError):
    """A cache file that is not what the cache wrote: missing, truncated, altered, holding
    other rows, or a manifest that cannot be read. The message names the file and the fix."""


class CacheIncompleteError(ValueError):
    """A cache whose shards are not all written yet (finalizing before every worker ended, or
    after one died); the message names the missing shards and how to write them."""


class CacheRepairWarning(UserWarning):
    """A damaged or stray file found in a cache folder while caching; it is written again
    (or removed). The message names the file and what was wrong with it."""


@dataclass(frozen=True)
class CacheKey:
    """Everything that determines the cached numbers; its hash names the folder.

    ``model_dtype`` is the dtype the model ran in (the fingerprint names the checkpoint's
    weights whatever dtype they are loaded in); ``dtype`` the dtype the vectors are stored in;
    ``model_blocks`` the number of blocks loaded (None in keys made before it was recorded).
    """

    model_name: str
    model_fingerprint: str
    dataset_hash: str
    n_transcripts: int
    hooks: tuple[str, ...]
    tokens: str
    max_tokens: int
    per_token: bool
    dtype: str
    model_dtype: str = "float32"
    # blocks loaded (``load_model(..., max_layer=...)`` loads fewer than the checkpoint has)
    model_blocks: int | None = None
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CacheKey:
        return cls(**{**raw, "hooks": tuple(raw["hooks"])})

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


def full_check(verify: bool | None) -> bool:
    """Whether to compare every shard's checksum: ``verify``, else ``$INTERP_CACHE_VERIFY``."""
    if verify is not None:
        return verify
    return os.environ.get(VERIFY_ENV, "").strip().lower() not in ("", "0", "false", "no")


def check_key(found: CacheKey, wanted: CacheKey, folder: Path) -> None:
    """Refuse a cache folder whose manifest records other inputs than the request's."""
    check_same(
        asdict(found),
        asdict(wanted),
        where=folder,
        fix="delete the folder or point the cache elsewhere",
        error=CacheMismatchError,
    )
