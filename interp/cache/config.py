"""``CacheConfig``: the one typed config behind ``python -m interp.cache`` and
:func:`interp.cache.parallel.run_cache`.

By default it asks for the cache the probe pipeline asks for: ``--layers 14`` caches
``blocks.14.hook_resid_post`` and the layer-0 control hook (``blocks.0.hook_resid_pre``) with
the probe's token selection, ``max_tokens`` and dataset spelling (and ``--max-scenarios``
subset), so ``python -m interp.probe`` with the same model, dataset and layers reuses it
without a forward pass. ``__post_init__`` only validates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from interp.cache.request import STORE_DTYPES, CacheRequest
from interp.config import (
    ConfigError,
    ModelOptions,
    as_layers,
    check_number,
)
from interp.data.tokens import TOKEN_SELECTIONS
from interp.hooks import SITES, check_site, hook_name, parse_hook_name
from interp.models import DEFAULT_MODEL
from interp.paths import cache_root


@dataclass
class CacheConfig(ModelOptions):
    """Cache residual-stream activations of a dataset on disk, in one process or split over
    many (torchrun, a SLURM array, or --rank/--world-size)."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "model, as for python -m interp.probe (interp.list_models() lists them)"},
    )
    dataset: str = field(
        default="builtin:consistency",
        metadata={"help": "builtin:consistency (or another built-in name) or a JSONL file"},
    )
    layers: tuple[int, ...] | None = field(
        default=None,
        metadata={"help": "layer(s) whose --site hook is cached: 14, 0-29 or 0,7,14"},
    )
    site: str = field(
        default="resid_post",
        metadata={"help": f"residual stream site: {', '.join(SITES)}", "choices": SITES},
    )
    hooks: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "hook names instead of --layers, e.g. blocks.3.hook_resid_mid,..."},
    )
    control: bool = field(
        default=True,
        metadata={
            "help": "with --layers, also cache the layer-0 control hook (blocks.0.hook_resid_pre) "
            "as python -m interp.probe does, so the probe reuses this cache"
        },
    )
    tokens: str = field(
        default="answer",
        metadata={"help": "tokens pooled (mean) per reply", "choices": TOKEN_SELECTIONS},
    )
    max_tokens: int = field(
        default=1024, metadata={"help": "longer transcripts are cut from the left (reply kept)"}
    )
    max_scenarios: int | None = field(
        default=None, metadata={"help": "only this many scenarios, chosen as the probe does"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the --max-scenarios choice"})
    per_token: bool = field(
        default=False, metadata={"help": "also keep every selected token's vector (large)"}
    )
    store_dtype: str = field(
        default="float32",
        metadata={"help": "dtype the vectors are stored in", "choices": STORE_DTYPES},
    )
    batch_size: int = field(default=16, metadata={"help": "at most this many transcripts per pass"})
    batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": "at most this many padded tokens per pass (batch x longest transcript); "
            "halved with the batch after an out-of-memory error",
            "default_text": "no limit",
        },
    )
    shard_size: int = field(
        default=256, metadata={"help": "transcripts per shard file (a work item of a worker)"}
    )
    shard_tokens: int | None = field(
        default=None,
        metadata={
            "help": "also cut a shard before its selected tokens exceed this (bounds the memory "
            "of a --per-token shard, held until it is written)",
            "default_text": "no limit",
        },
    )
    rank: int | None = field(
        default=None,
        metadata={"help": "this worker's number (default: torchrun's or SLURM's, else 0)"},
    )
    world_size: int | None = field(
        default=None,
        metadata={"help": "number of workers (default: torchrun's or SLURM's, else 1)"},
    )
    finalize: bool = field(
        default=False,
        metadata={
            "help": "run no forward pass: check every shard and mark the cache complete (after "
            "a SLURM array, or a crash); same options as the caching run"
        },
    )
    verify: bool | None = field(
        default=None,
        metadata={
            "help": "--verify: check every byte of every kept shard against its checksum; "
            "--no-verify: compare no checksum (sizes, headers, dtypes, shapes and rows only)",
            "default_text": "check whole each shard changed since it was written or checked",
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "cache root (default: $INTERP_CACHE or ./cache)"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar (worker 0)"})

    def __post_init__(self) -> None:
        if (self.layers is None) == (self.hooks is None):
            raise ConfigError(
                "give either --layers (with --site) or --hooks, e.g. --layers 14 for what "
                "python -m interp.probe --layer 14 caches"
            )
        if self.layers is not None:
            self.layers = as_layers(self.layers)
        for name in self.hooks or ():
            parse_hook_name(name)
        check_site(self.site)
        super().__post_init__()
        if self.tokens not in TOKEN_SELECTIONS:
            raise ConfigError(
                f"unknown tokens {self.tokens!r}; choose one of {', '.join(TOKEN_SELECTIONS)}"
            )
        if self.store_dtype not in STORE_DTYPES:
            raise ConfigError(
                f"unknown store_dtype {self.store_dtype!r}; choose one of {', '.join(STORE_DTYPES)}"
            )
        for name in ("max_tokens", "batch_size", "shard_size", "batch_tokens", "shard_tokens"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=1, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        if self.max_scenarios is not None:
            check_number("max_scenarios", self.max_scenarios, low=1, integer=True)

    def hook_names(self, control_hook: str) -> list[str]:
        """The hooks to cache: ``--hooks``, or each layer's ``--site`` hook plus, with
        ``control``, ``control_hook`` (the probe's layer-0 control)."""
        if self.hooks is not None:
            return list(self.hooks)
        names = [hook_name(layer, self.site) for layer in self.layers or ()]
        return [*names, control_hook] if self.control else names

    def request(self, progress: bool = True) -> CacheRequest:
        """How this config caches, as :func:`interp.cache.make_job` takes it (the activations
        folder under ``cache_dir``; a progress bar only if ``progress`` and ``--progress``)."""
        root = Path(self.cache_dir) if self.cache_dir else cache_root()
        return CacheRequest(
            tokens=self.tokens,
            batch_size=self.batch_size,
            batch_tokens=self.batch_tokens,
            max_tokens=self.max_tokens,
            per_token=self.per_token,
            dtype=self.store_dtype,
            shard_size=self.shard_size,
            shard_tokens=self.shard_tokens,
            cache_dir=root / "activations",
            progress=self.progress and progress,
            verify=self.verify,
        )
