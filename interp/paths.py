"""Where artefacts live.

Everything the toolkit writes goes under the cache root: ``$INTERP_CACHE`` if set, else
``./cache`` (the repository's ``cache/`` when run from its root). How files are written
(atomically, self-contained figures, recorded versions) is :mod:`interp.artifacts`.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache root, read at call time (importing this module reads nothing)."""
    return Path(os.environ.get("INTERP_CACHE", "cache"))
