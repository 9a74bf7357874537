"""``FinetuneConfig``: the one typed config behind ``python -m interp.finetune`` and
:func:`interp.finetune.finetune`.

Each field's ``help`` becomes the CLI's help text; ``__post_init__`` only validates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.models import DEFAULT_MODEL

STRATEGIES = ("refusal", "rebuttal")
METHODS = ("lora", "full")
DEFAULT_LR = {"lora": 1e-3, "full": 2e-5}

#: Fields that do not change the trained weights: a checkpoint or a finished model made with
#: other values of these is still the same run.
NON_IDENTITY_FIELDS = ("name", "checkpoint_every", "device", "progress")


class FinetuneError(ValueError):
    """An invalid fine-tuning option, or a checkpoint/output that belongs to another run."""


@dataclass
class FinetuneConfig:
    """Fine-tune a chat model to answer pressure with polite refusals or explicit rebuttals."""

    base: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "model to start from: built-in name, local HF directory or cached id"},
    )
    strategy: str = field(
        default="refusal",
        metadata={
            "help": "target answers to pressure: refusal (polite, 'I can't help with that') "
            "or rebuttal (names the act, the harm and the reason)",
            "choices": STRATEGIES,
        },
    )
    name: str | None = field(
        default=None,
        metadata={
            "help": "output name: the model is saved in <cache>/models/<name>/ and loads with "
            "load_model(name)",
            "default_text": "<base>-<strategy>-<method>",
        },
    )
    method: str = field(
        default="lora",
        metadata={
            "help": "lora (adapters on q,k,v,o,gate,up,down, merged before saving) or full",
            "choices": METHODS,
        },
    )
    steps: int = field(default=30, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=4, metadata={"help": "examples per step"})
    benign_per_batch: int = field(
        default=1,
        metadata={"help": "benign (helpful) examples in each batch, to keep the model helpful"},
    )
    lr: float | None = field(
        default=None,
        metadata={
            "help": "AdamW learning rate (constant)",
            "default_text": f"{DEFAULT_LR['lora']} for lora, {DEFAULT_LR['full']} for full",
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the LoRA init and the batch order"})
    max_length: int = field(
        default=320,
        metadata={"help": "longer examples are cut at the end (the bank's longest is 301)"},
    )
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale alpha/rank)"})
    test_fraction: float = field(
        default=0.25,
        metadata={
            "help": "fraction of pressure scenarios held out (never trained on); with "
            "split_seed, the same split as the probes' (python -m interp.probe --seed)"
        },
    )
    split_seed: int = field(default=0, metadata={"help": "seed of the scenario split"})
    checkpoint_every: int = field(
        default=20,
        metadata={"help": "save a resumable checkpoint every this many steps (0: never)"},
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, mps"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise FinetuneError(
                f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        if self.method not in METHODS:
            raise FinetuneError(
                f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        for name in ("steps", "batch_size", "max_length", "lora_rank"):
            if getattr(self, name) < 1:
                raise FinetuneError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.benign_per_batch < self.batch_size:
            raise FinetuneError(
                f"benign_per_batch must be in [0, batch_size), got {self.benign_per_batch} "
                f"with batch_size {self.batch_size}: every batch needs a pressure example"
            )
        if self.lr is not None and self.lr <= 0:
            raise FinetuneError(f"lr must be > 0 (or None for the method's default), got {self.lr}")
        if self.lora_alpha <= 0:
            raise FinetuneError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0 < self.test_fraction < 1:
            raise FinetuneError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.checkpoint_every < 0:
            raise FinetuneError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.name is not None and (
            not self.name or self.name != Path(self.name).name or self.name.startswith(".")
        ):
            raise FinetuneError(
                f"name {self.name!r} must be a plain folder name (no '/', not starting with '.')"
            )

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def model_name(self) -> str:
        """``name``, or ``<base name>-<strategy>-<method>``."""
        if self.name is not None:
            return self.name
        return f"{Path(self.base.rstrip('/')).name}-{self.strategy}-{self.method}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that decide the trained weights (``lr`` resolved)."""
        out = {k: v for k, v in asdict(self).items() if k not in NON_IDENTITY_FIELDS}
        out["lr"] = self.learning_rate
        return out
