"""``ProbeConfig``: the one typed config behind ``python -m interp.probe`` and ``train_probe``.

Each field's ``help`` becomes the CLI's help text; ``__post_init__`` only validates and
normalises (it reads nothing and writes nothing), so the API accepts what the CLI accepts
(``layers=14``, ``layers="0-3"``). :func:`interp.cli.parser_for` turns the dataclass into flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from interp.config import (
    ConfigError,
    ModelOptions,
    as_layers,
    check_number,
)
from interp.data.tokens import TOKEN_SELECTIONS
from interp.hooks import SITES, check_site
from interp.models import DEFAULT_MODEL


@dataclass
class ProbeConfig(ModelOptions):
    """Train a divergence probe per layer and evaluate it on held-out scenarios."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "built-in name (smollm2-135m-instruct, tiny-random, tiny-random-<arch>: "
            "interp.list_models() lists them), a model saved under <cache>/models, a local "
            "Hugging Face directory, or a Hugging Face id already in the local cache"
        },
    )
    dataset: str = field(
        default="builtin:consistency",
        metadata={
            "help": "training data: builtin:consistency, builtin:consistency-full, "
            "or a JSONL file in the transcript format"
        },
    )
    eval_dataset: str | None = field(
        default=None,
        metadata={"help": "also score the trained probe on this JSONL file (reported separately)"},
    )
    control_dataset: str | None = field(
        default="builtin:benign",
        metadata={
            "help": "ordinary chat (label 0) that sets a 1%%-false-positive threshold; "
            "'none' to skip"
        },
    )
    layers: tuple[int, ...] = field(
        default=(14,),
        metadata={"help": "layer(s) to probe: 14, 0-29 or 0,7,14 (--layer is an alias)"},
    )
    site: str = field(
        default="resid_post",
        metadata={"help": f"residual stream site: {', '.join(SITES)}", "choices": SITES},
    )
    tokens: str = field(
        default="answer",
        metadata={
            "help": "tokens pooled (mean) per reply: answer (after 'Answer:'), reply "
            "(whole last message) or last (its final token)",
            "choices": TOKEN_SELECTIONS,
        },
    )
    probe: str = field(default="logistic", metadata={"help": "probe kind: logistic or mean_diff"})
    c: float | None = field(
        default=None,
        metadata={
            "help": "logistic probe: inverse L2 strength, as scikit-learn's C; 'auto' "
            "(the default) picks it per layer from 0.001-10 by 4-fold cross-validation "
            "over the training scenarios",
            "default_text": "auto",
        },
    )
    test_fraction: float = field(
        default=0.25, metadata={"help": "fraction of scenarios (groups) held out for testing"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the split and random controls"})
    max_scenarios: int | None = field(
        default=None, metadata={"help": "use only this many scenarios (quick runs)"}
    )
    batch_size: int = field(default=16, metadata={"help": "transcripts per forward pass"})
    max_tokens: int = field(
        default=1024, metadata={"help": "longer transcripts are cut from the left (reply kept)"}
    )
    n_random: int = field(
        default=32, metadata={"help": "random directions in the random-direction control"}
    )
    erase_stances: bool = field(
        default=False,
        metadata={
            "help": "erase the answer-stance and reasoning-stance concepts (LEACE, one eraser "
            "per hook fitted on the training scenarios) from the activations before the "
            "probes are fitted and evaluated; the table shows divergence and stance AUROCs "
            "before and after, and each saved probe keeps its eraser (needs meta 'answer' and "
            "'reasoning' on every training transcript)"
        },
    )
    out: str | None = field(
        default=None,
        metadata={"help": "output folder (default: <cache>/runs/<model>/<run name>)"},
    )
    json: str | None = field(default=None, metadata={"help": "also write the metrics here"})
    cache_dir: str | None = field(
        default=None, metadata={"help": "cache root (default: $INTERP_CACHE or ./cache)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        self.layers = as_layers(self.layers)
        check_site(self.site)
        super().__post_init__()
        if self.tokens not in TOKEN_SELECTIONS:
            raise ConfigError(
                f"unknown tokens {self.tokens!r}; choose one of {', '.join(TOKEN_SELECTIONS)}"
            )
        check_fit_settings(self)
        if self.max_scenarios is not None:
            check_number(
                "max_scenarios",
                self.max_scenarios,
                low=4,
                integer=True,
                hint=" so both sides of the split have data",
            )
        if self.control_dataset in ("none", ""):
            self.control_dataset = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_fit_settings(config: Any) -> None:
    """Check the probe-fitting settings a probe run and the cross-dataset matrix share:
    ``probe`` (a registered kind), ``test_fraction``, ``c``, ``seed``, ``batch_size``,
    ``max_tokens`` and ``n_random``."""
    from probes import probe_kinds

    if config.probe not in probe_kinds():
        raise ConfigError(
            f"unknown probe {config.probe!r}; choose one of {', '.join(probe_kinds())}"
        )
    check_number(
        "test_fraction", config.test_fraction, low=0, high=1, low_open=True, high_open=True
    )
    if config.c is not None:
        check_number("c", config.c, low=0, low_open=True, hint=" (or None for cross-validation)")
    check_number("seed", config.seed, low=0, integer=True)
    for name in ("batch_size", "max_tokens", "n_random"):
        check_number(name, getattr(config, name), low=1, integer=True)
