"""``FinetuneConfig``: the one typed config behind ``python -m interp.finetune`` and
:func:`interp.finetune.finetune`.

Each field's ``help`` becomes the CLI's help text; ``__post_init__`` only validates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.config import check_number
from interp.finetune.schedule import SCHEDULES
from interp.models import DEFAULT_MODEL

STRATEGIES = ("refusal", "rebuttal")
METHODS = ("lora", "full")
DEFAULT_LR = {"lora": 1e-3, "full": 2e-5}
#: Which reply tokens carry the loss: the whole reply, or only its answer part.
LOSS_ON = ("reply", "answer")

#: Fields that do not change the trained weights: a checkpoint or a finished model made with
#: other values of these is still the same run.
NON_IDENTITY_FIELDS = ("name", "checkpoint_every", "keep_checkpoints", "device", "progress")
#: Fields added after models were trained and published: at these values (the behaviour before
#: them) they are left out of :meth:`FinetuneConfig.identity`, so those models are still found.
LATER_FIELDS = {"loss_on": "reply", "schedule": "constant", "warmup_steps": 0, "pressure_group": 1}


class FinetuneError(ValueError):
    """An invalid fine-tuning option, or a checkpoint/output that belongs to another run."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint file (named in the message) that was skipped, and what the run
    does instead: fall back to an older checkpoint or restart from step 0."""


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
            "help": "AdamW learning rate (the peak, with --warmup-steps or a decaying --schedule)",
            "default_text": f"{DEFAULT_LR['lora']} for lora, {DEFAULT_LR['full']} for full",
        },
    )
    schedule: str = field(
        default="constant",
        metadata={
            "help": "learning rate after the warm-up: constant, or linear or cosine decay "
            "towards 0 at the last step",
            "choices": SCHEDULES,
        },
    )
    warmup_steps: int = field(
        default=0,
        metadata={"help": "steps of linear warm-up from lr/warmup_steps to lr (0: none)"},
    )
    loss_on: str = field(
        default="reply",
        metadata={
            "help": "tokens that carry the loss: reply (the whole assistant reply) or answer "
            "(only the part after 'Answer:', as the reply grammar cuts it, and the end-of-turn "
            "token: where a reply's decision is made)",
            "choices": LOSS_ON,
        },
    )
    pressure_group: int = field(
        default=1,
        metadata={
            "help": "pressure examples are drawn in runs of this many consecutive examples "
            "(2: each matched pair of a caller's examples, e.g. with and without a trigger, "
            "lands in the same batch)"
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
    keep_checkpoints: bool = field(
        default=False,
        metadata={
            "help": "keep every checkpoint (and one of the last step) after training, so a "
            "step can be chosen afterwards (interp.finetune.steps); default: only the newest "
            "is kept, and none once the model is saved"
        },
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
        for name, allowed in (("schedule", SCHEDULES), ("loss_on", LOSS_ON)):
            if getattr(self, name) not in allowed:
                raise FinetuneError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )
        for name in ("steps", "batch_size", "max_length", "lora_rank", "pressure_group"):
            check_number(name, getattr(self, name), low=1, integer=True, error=FinetuneError)
        for name in ("seed", "split_seed", "checkpoint_every"):
            check_number(name, getattr(self, name), low=0, integer=True, error=FinetuneError)
        check_number("warmup_steps", self.warmup_steps, low=0, high=self.steps,
                     high_open=True, integer=True, error=FinetuneError)  # fmt: skip
        check_number(
            "benign_per_batch",
            self.benign_per_batch,
            low=0,
            high=self.batch_size,
            high_open=True,
            integer=True,
            hint=f" (batch_size is {self.batch_size}: every batch needs a pressure example)",
            error=FinetuneError,
        )
        if (self.batch_size - self.benign_per_batch) % self.pressure_group:
            raise FinetuneError(
                f"pressure_group {self.pressure_group} does not divide the "
                f"{self.batch_size - self.benign_per_batch} pressure examples of a batch "
                "(batch_size - benign_per_batch); change batch_size or benign_per_batch"
            )
        if self.lr is not None:
            check_number(
                "lr",
                self.lr,
                low=0,
                low_open=True,
                hint=" (or None for the method's default)",
                error=FinetuneError,
            )
        check_number("lora_alpha", self.lora_alpha, low=0, low_open=True, error=FinetuneError)
        check_number(
            "test_fraction",
            self.test_fraction,
            low=0,
            high=1,
            low_open=True,
            high_open=True,
            error=FinetuneError,
        )
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
        out = {
            k: v
            for k, v in asdict(self).items()
            if k not in NON_IDENTITY_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])
        }
        out["lr"] = self.learning_rate
        return out
