"""``SAEConfig``: the one typed config behind ``python -m interp.sae`` and ``train_sae``.

Each field's ``help`` becomes the CLI's help text; ``__post_init__`` only validates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from interp.config import (
    ConfigError,
    ModelOptions,
    check_number,
)
from interp.hooks import SITES, check_site
from interp.models import DEFAULT_MODEL
from probes.registry import Registry

#: SAELens training architectures this toolkit offers (all registered by ``sae_lens``), each
#: with the field of its SAELens training config that sets the sparsity. Iterating it gives the
#: names (it is the CLI's ``--architecture`` choices); :func:`register_architecture` adds one.
ARCHITECTURES: Registry[str] = Registry("SAE architecture", ConfigError)
for _name, _sparsity_field in (
    ("topk", "k"),
    ("batchtopk", "k"),
    ("standard", "l1_coefficient"),
    ("jumprelu", "l0_coefficient"),
    ("gated", "l1_coefficient"),
):
    ARCHITECTURES.register(_name, _sparsity_field)


def register_architecture(name: str, sparsity_field: str) -> str:
    """Offer another SAELens architecture (one ``sae_lens`` registers) by its name; a name that
    is already offered raises :class:`ConfigError`."""
    return ARCHITECTURES.register(name, sparsity_field)


@dataclass
class SAEConfig(ModelOptions):
    """Train a sparse autoencoder (SAELens) on per-token residual activations of one layer."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "model spec, as for interp.load_model (name, local dir, tiny-random)"},
    )
    layer: int = field(default=14, metadata={"help": "block whose residual stream is read"})
    site: str = field(
        default="resid_post",
        metadata={"help": f"residual stream site: {', '.join(SITES)}", "choices": SITES},
    )
    architecture: str = field(
        default="topk",
        metadata={"help": "SAELens architecture", "choices": ARCHITECTURES},
    )
    d_sae: int | None = field(
        default=None,
        metadata={"help": "number of features", "default_text": "4 x d_model"},
    )
    k: int = field(default=32, metadata={"help": "active features per token (topk, batchtopk)"})
    l1_coefficient: float = field(
        default=5.0, metadata={"help": "sparsity penalty (standard, gated; jumprelu's L0 coef.)"}
    )
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate (decays to lr/10)"})
    training_tokens: int = field(
        default=128_000,
        metadata={"help": "activation vectors seen in training (repeats the data as needed)"},
    )
    batch_size: int = field(default=512, metadata={"help": "activation vectors per step"})
    buffer_tokens: int = field(
        default=32_768,
        metadata={"help": "tokens held in the shuffle buffer (streamed shard by shard)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the SAE, the shuffle and the split"})
    datasets: tuple[str, ...] = field(
        default=("builtin:consistency", "builtin:benign"),
        metadata={
            "help": "transcript sets read: built-in names or JSONL files (e.g. the model's "
            "own generations), comma-separated"
        },
    )
    test_fraction: float = field(
        default=0.25,
        metadata={
            "help": "scenarios of the first (labelled) dataset held out of SAE training, "
            "split as the probes split them (same seed: the probes' test scenarios)"
        },
    )
    eval_transcripts: int = field(
        default=32,
        metadata={"help": "held-out transcripts run through the model for the loss increase"},
    )
    name: str | None = field(
        default=None,
        metadata={"help": "folder name under <cache>/saes/", "default_text": "from the config"},
    )
    forward_batch_size: int = field(
        default=16, metadata={"help": "transcripts per forward pass when caching"}
    )
    max_tokens: int = field(default=1024, metadata={"help": "longer transcripts cut from left"})
    cache_dir: str | None = field(
        default=None, metadata={"help": "cache root (default: $INTERP_CACHE or ./cache)"}
    )
    overwrite: bool = field(default=False, metadata={"help": "retrain even if the SAE exists"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        if isinstance(self.datasets, str):
            self.datasets = tuple(s.strip() for s in self.datasets.split(",") if s.strip())
        self.datasets = tuple(self.datasets)
        if not self.datasets:
            raise ConfigError("datasets is empty: name at least one, e.g. builtin:consistency")
        check_site(self.site)
        super().__post_init__()
        ARCHITECTURES.get(self.architecture)
        check_number("layer", self.layer, low=0, integer=True)
        if self.d_sae is not None:
            check_number("d_sae", self.d_sae, low=1, integer=True)
        for name in (
            "k",
            "training_tokens",
            "batch_size",
            "buffer_tokens",
            "eval_transcripts",
            "forward_batch_size",
            "max_tokens",
        ):
            check_number(name, getattr(self, name), low=1, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("l1_coefficient", self.l1_coefficient, low=0)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number(
            "test_fraction", self.test_fraction, low=0, high=1, low_open=True, high_open=True
        )
        if self.d_sae is not None and self.k > self.d_sae:
            raise ConfigError(f"k ({self.k}) cannot exceed d_sae ({self.d_sae})")
        if self.buffer_tokens < self.batch_size:
            raise ConfigError(
                f"buffer_tokens ({self.buffer_tokens}) must be >= batch_size ({self.batch_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
