"""``MatrixConfig``: the one typed config behind ``python -m interp.probe.matrix`` and
:func:`interp.probe.matrix.run_matrix` (the CLI is built from its fields)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from interp.config import (
    ConfigError,
    ModelOptions,
    as_layers,
    check_number,
)
from interp.hooks import SITES, check_site
from interp.models import DEFAULT_MODEL
from interp.probe.config import check_fit_settings

DEFAULT_SETS = (
    "builtin:consistency",
    "builtin:instructed-pairs",
    "builtin:apollo-roleplaying",
    "builtin:apollo-ai-liar",
)


@dataclass
class MatrixConfig(ModelOptions):
    """Train a probe on each named set and test it on each (a cross-dataset matrix per layer)."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "built-in name, a model under <cache>/models or a local HF directory"},
    )
    sets: tuple[str, ...] = field(
        default=DEFAULT_SETS,
        metadata={
            "help": "datasets, comma-separated: builtin:NAME (interp.list_datasets(); a public "
            "set reads its copy: builtin:NAME=DIR) or JSONL files; each is trained on and "
            "tested on"
        },
    )
    control_dataset: str = field(
        default="builtin:benign",
        metadata={"help": "ordinary chat (label 0) that sets each probe's 1%%-FPR threshold"},
    )
    layers: tuple[int, ...] = field(
        default=(14,), metadata={"help": "layer(s): 14, 0-29 or 9,14 (--layer is an alias)"}
    )
    site: str = field(
        default="resid_post",
        metadata={"help": f"residual stream site: {', '.join(SITES)}", "choices": SITES},
    )
    probe: str = field(default="logistic", metadata={"help": "probe kind: logistic or mean_diff"})
    c: float | None = field(
        default=None,
        metadata={
            "help": "logistic C; auto (default) picks it per layer by 4-fold cross-validation "
            "over the training set's scenarios",
            "default_text": "auto",
        },
    )
    test_fraction: float = field(
        default=0.25, metadata={"help": "scenarios of each set held out for its own cell"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the splits and random controls"})
    max_groups: int | None = field(
        default=None,
        metadata={"help": "use at most this many scenarios (groups) of each set (quick runs)"},
    )
    batch_size: int = field(default=16, metadata={"help": "transcripts per forward pass"})
    max_tokens: int = field(
        default=1024, metadata={"help": "longer transcripts are cut from the left (reply kept)"}
    )
    n_random: int = field(
        default=32, metadata={"help": "random directions in the random-direction control"}
    )
    out: str | None = field(
        default=None, metadata={"help": "output folder (default: <cache>/matrix/<model>/...)"}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "cache root (default: $INTERP_CACHE or ./cache)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        self.layers = as_layers(self.layers)
        self.sets = tuple(self.sets)
        check_site(self.site)
        super().__post_init__()
        if len(self.sets) < 1 or len(set(self.sets)) != len(self.sets):
            raise ConfigError(f"sets {self.sets!r}: name at least one set, each once")
        check_fit_settings(self)
        if self.max_groups is not None:
            check_number("max_groups", self.max_groups, low=4, integer=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
