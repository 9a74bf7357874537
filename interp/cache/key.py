"""What identifies an activation cache: :class:`CacheKey` (its hash names the folder), the
errors a cache raises, and the constants of its on-disk format."""

from __future__ import annotations

import enum
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
#: 4: each shard's record holds a checksum per part (header, each tensor) and a file stamp.
MANIFEST_VERSION = 4


MANIFEST = "manifest.json"


#: ``1``: check every shard whole on opening (as ``verify=True`` does); ``0``: compare no
#: checksum (as ``verify=False`` does); unset: the default, :attr:`Verify.READ`.
VERIFY_ENV = "INTERP_CACHE_VERIFY"


READ_FIX = (
    "delete that file and run cache_activations (or python -m interp.cache) with the same "
    "inputs to rebuild it, or delete the folder"
)


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


class Verify(enum.Enum):
    """How much of a cache's checksums are compared.

    - ``READ`` (the default): every byte read is checked against its checksum as it is read
      (the headers when a cache is opened, each tensor when it is read), so reading costs no
      extra I/O; caching checks a kept shard whole when its file stamp differs from the one
      recorded when the cache wrote or last checked it (a file written, copied or replaced
      since).
    - ``FULL`` (``verify=True``, ``INTERP_CACHE_VERIFY=1``, ``--verify``): every shard is read
      and checked whole when a cache is opened or kept, whatever its stamp.
    - ``OFF`` (``verify=False``, ``INTERP_CACHE_VERIFY=0``, ``--no-verify``): no checksum is
      compared; sizes, headers, dtypes, shapes and rows still are.
    """

    OFF = "off"
    READ = "read"
    FULL = "full"


_ENV_VALUES = {
    "": Verify.READ,
    "1": Verify.FULL,
    "true": Verify.FULL,
    "yes": Verify.FULL,
    "full": Verify.FULL,
    "0": Verify.OFF,
    "false": Verify.OFF,
    "no": Verify.OFF,
    "off": Verify.OFF,
}


def verify_mode(verify: bool | None) -> Verify:
    """The :class:`Verify` level of ``verify`` (True: FULL, False: OFF), else of
    ``$INTERP_CACHE_VERIFY`` (unset: READ)."""
    if verify is not None:
        return Verify.FULL if verify else Verify.OFF
    raw = os.environ.get(VERIFY_ENV, "").strip().lower()
    if raw not in _ENV_VALUES:
        raise ValueError(
            f"{VERIFY_ENV}={raw!r} is not understood: set it to 1 (check every shard whole), "
            "0 (compare no checksum) or leave it unset (check every byte read)"
        )
    return _ENV_VALUES[raw]


def check_key(found: CacheKey, wanted: CacheKey, folder: Path) -> None:
    """Refuse a cache folder whose manifest records other inputs than the request's."""
    check_same(
        asdict(found),
        asdict(wanted),
        where=folder,
        fix="delete the folder or point the cache elsewhere",
        error=CacheMismatchError,
    )
