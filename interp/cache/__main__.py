"""``python -m interp.cache --layers 14``: cache activations on disk, in one process or split
over many (``torchrun --nproc-per-node 8 -m interp.cache ...``, a SLURM array, or
``--rank``/``--world-size``); ``--finalize`` checks every shard and completes the cache.

All options are the fields of :class:`interp.cache.config.CacheConfig` (``--help`` lists them);
:mod:`interp.cache.parallel` describes how the work is split.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cache.config import CacheConfig
from interp.cli import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    from interp.cache.parallel import describe, run_cache

    return run_cli(
        CacheConfig,
        run_cache,
        argv,
        prog="python -m interp.cache",
        report=describe,
        aliases={"--layer": "layers"},
    )


if __name__ == "__main__":
    raise SystemExit(main())
