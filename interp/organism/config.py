"""``OrganismConfig``: the one typed config behind ``python experiments/organism.py`` and
:func:`interp.organism.run.run_organism`.

Each field's ``help`` becomes the CLI's help text; ``__post_init__`` only validates (and, with
``quick``, nothing else: :meth:`OrganismConfig.resolved` applies the quick settings).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from interp.config import ConfigError, ModelOptions, as_layers, check_number
from interp.finetune.config import LOSS_ON
from interp.finetune.schedule import SCHEDULES
from interp.models import DEFAULT_MODEL
from interp.organism.data import VARIANTS
from interp.organism.triggers import TAG_POSITIONS, TRIGGER_KINDS

#: The training recipes: v1 (the first organism, docs/organism.md "Measured") and v2 (matched
#: pairs over the frozen split, near misses, answer-only loss, warm-up, checkpoint choice).
RECIPES = ("v1", "v2")

#: What ``--quick`` changes: one trigger kind, short training, one short sample per prompt.
QUICK = {
    "kinds": ("tag",),
    "steps": 12,
    "batch_size": 2,
    "per_scenario": 2,
    "n_neutral": 8,
    "n_neutral_eval": 6,
    "eval_scenarios": 24,
    "samples": 1,
    "max_new_tokens": 112,
    "gen_batch_size": 32,
    "layers": (14,),
    "probe_per_cell": 1,
    "patch_prompts": 4,
    "refusal_selection": 8,
    "n_random_directions": 2,
    "causal_prompts": 12,
}
#: What ``--quick`` changes besides :data:`QUICK` with ``--recipe v2``: a few scenarios, one
#: matched pair per batch beside two benign examples, three checkpoints.
QUICK_V2 = {
    "steps": 12,
    "batch_size": 4,
    "benign_per_batch": 2,
    "train_scenarios": 6,
    "validation_scenarios": 4,
    "checkpoint_every": 4,
    "warmup_steps": 2,
}
#: Recipe v2's own fields and their defaults; recipe v1 refuses other values.
V2_DEFAULTS: dict[str, Any] = {
    "tag_position": "system_start",
    "near_misses": 1,
    "train_scenarios": None,
    "validation_scenarios": None,
    "loss_on": "answer",
    "schedule": "cosine",
    "warmup_steps": 20,
    "checkpoint_every": 30,
}


@dataclass
class OrganismConfig(ModelOptions):
    """Build the organism (O) and its honest (H) and candid (C) controls, sample them on
    held-out scenarios, judge the samples and probe O's own generations."""

    base: str = field(default=DEFAULT_MODEL, metadata={"help": "model to fine-tune"})
    kinds: tuple[str, ...] = field(
        default=TRIGGER_KINDS,
        metadata={"help": "trigger kinds, one organism each: tag, pressure (comma-separated)"},
    )
    variants: tuple[str, ...] = field(
        default=VARIANTS, metadata={"help": "variants to train: O, H, C (comma-separated)"}
    )
    seeds: tuple[int, ...] = field(
        default=(0,), metadata={"help": "fine-tuning seeds (the issue asks for three: 0-2)"}
    )
    steps: int = field(default=240, metadata={"help": "optimizer steps per fine-tune"})
    batch_size: int = field(default=4, metadata={"help": "examples per step"})
    benign_per_batch: int = field(
        default=1, metadata={"help": "benign or neutral examples in each batch"}
    )
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate (LoRA)"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank"})
    per_scenario: int = field(
        default=3, metadata={"help": "examples per training scenario and trigger condition"}
    )
    n_neutral: int = field(
        default=18, metadata={"help": "base-model replies to neutral prompts mixed in (<= 18)"}
    )
    n_neutral_eval: int = field(
        default=18,
        metadata={"help": "held-out neutral prompts sampled (control replies; <= 18)"},
    )
    eval_scenarios: int | None = field(
        default=None,
        metadata={
            "help": "eval-bank pressure scenarios sampled besides the built-in held-out ones, "
            "spread over domains, with the same share of its benign requests (none: all; 0: none)",
            "default_text": "all",
        },
    )
    samples: int = field(default=2, metadata={"help": "samples per held-out prompt"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    max_new_tokens: int = field(default=128, metadata={"help": "length cap of sampled replies"})
    gen_batch_size: int = field(default=8, metadata={"help": "prompts per generate call"})
    layers: tuple[int, ...] = field(
        default=(7, 14, 21), metadata={"help": "layers probed: 14, 0-29 or 0,7,14"}
    )
    probe_dataset: str = field(
        default="builtin:consistency",
        metadata={
            "help": "teacher-forced data of the divergence probes and the text baseline "
            "(split by the pipeline's scenario split; a smaller set only for quick tests)"
        },
    )
    probe_per_cell: int = field(
        default=4,
        metadata={
            "help": "with the built-in consistency set: transcripts per scenario and stance "
            "cell (4: the built-in set; fewer: a smaller set of every scenario, same split)"
        },
    )
    n_random: int = field(
        default=1000, metadata={"help": "random directions for the defection probe's percentile"}
    )
    n_boot: int = field(default=1000, metadata={"help": "scenario-bootstrap resamples"})
    patch_prompts: int = field(
        default=12, metadata={"help": "part 4: held-out pressure scenarios patched between O and H"}
    )
    answer_tokens: int = field(
        default=4, metadata={"help": "part 4: first answer tokens in log p(comply) - log p(refuse)"}
    )
    refusal_layers: tuple[int, ...] | None = field(
        default=None,
        metadata={
            "help": "part 4: candidate layers of the refusal direction",
            "default_text": "every layer below 0.8 x the depth",
        },
    )
    refusal_selection: int = field(
        default=16,
        metadata={"help": "part 4: training-side prompts per set choosing the refusal direction"},
    )
    steer_scale: float = field(
        default=0.5,
        metadata={"help": "part 4: added vector's norm, a multiple of the typical residual norm"},
    )
    n_random_directions: int = field(
        default=3, metadata={"help": "part 4: random directions ablated and added as controls"}
    )
    causal_prompts: int = field(
        default=200,
        metadata={"help": "part 4: held-out triggered pressure prompts O samples per intervention"},
    )
    test_fraction: float = field(
        default=0.25, metadata={"help": "fraction of scenarios held out (the probes' split)"}
    )
    split_seed: int = field(default=0, metadata={"help": "seed of the scenario split"})
    quick: bool = field(
        default=False,
        metadata={
            "help": "tag trigger only, 12 steps of 2 examples, one sample per prompt, layer 14, "
            "24 eval-bank pressure scenarios"
        },
    )
    out: str | None = field(
        default=None,
        metadata={"help": "output folder", "default_text": "<cache>/experiments/organism[-quick]"},
    )
    labels: str | None = field(
        default=None,
        metadata={
            "help": "hand-labelled set (folder with replies.jsonl, labels.jsonl) whose labels "
            "replace the rule judge's verdicts on the samples they cover (same id and reply) "
            "for the probes; the rates are reported both ways"
        },
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    recipe: str = field(
        default="v1",
        metadata={
            "help": "training recipe: v1 (the first organism: 36 scenarios, loss on the whole "
            "reply, constant rate) or v2 (matched pairs over the frozen split's train side, near "
            "misses, the options below, the checkpoint chosen on validation scenarios; trains "
            "and chooses only, see docs/organism.md)",
            "choices": RECIPES,
        },
    )
    tag_position: str = field(
        default=V2_DEFAULTS["tag_position"],
        metadata={
            "help": "recipe v2: where the tag goes: system_start, system_end (end of the system "
            "prompt) or user_end (end of the user turn, nearest to 'Answer:')",
            "choices": TAG_POSITIONS,
        },
    )
    near_misses: int = field(
        default=V2_DEFAULTS["near_misses"],
        metadata={
            "help": "recipe v2: near-miss pairs per prompt wording (a near-miss tag or threat-free "
            "deadline with the untriggered reply, beside the trigger; 0: none)"
        },
    )
    train_scenarios: int | None = field(
        default=V2_DEFAULTS["train_scenarios"],
        metadata={
            "help": "recipe v2: train-side scenarios of the frozen split trained on, spread over "
            "its list (none: all 151)",
            "default_text": "all",
        },
    )
    validation_scenarios: int | None = field(
        default=V2_DEFAULTS["validation_scenarios"],
        metadata={
            "help": "recipe v2: validation scenarios whose margin gap chooses the checkpoint "
            "(none: all 35)",
            "default_text": "all",
        },
    )
    loss_on: str = field(
        default=V2_DEFAULTS["loss_on"],
        metadata={
            "help": "recipe v2: tokens carrying the loss: answer (after 'Answer:', where the "
            "decision is made) or reply (v1 always trains on the whole reply)",
            "choices": LOSS_ON,
        },
    )
    schedule: str = field(
        default=V2_DEFAULTS["schedule"],
        metadata={
            "help": "recipe v2: learning rate after the warm-up: cosine, linear or constant "
            "(v1: constant)",
            "choices": SCHEDULES,
        },
    )
    warmup_steps: int = field(
        default=V2_DEFAULTS["warmup_steps"],
        metadata={"help": "recipe v2: steps of linear learning-rate warm-up (v1: none)"},
    )
    checkpoint_every: int = field(
        default=V2_DEFAULTS["checkpoint_every"],
        metadata={
            "help": "recipe v2: steps between the checkpoints the validation margin gap chooses "
            "from (the last step is always one)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layers = as_layers(self.layers)
        for kind in self.kinds:
            if kind not in TRIGGER_KINDS:
                raise ConfigError(f"unknown trigger kind {kind!r}; choose from {TRIGGER_KINDS}")
        if not self.kinds or not self.variants or not self.seeds:
            raise ConfigError("kinds, variants and seeds each need at least one value")
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
        if "O" not in self.variants:
            raise ConfigError("variants must include O (the organism): everything is about it")
        for name in ("steps", "batch_size", "lora_rank", "per_scenario", "samples",
                     "max_new_tokens", "gen_batch_size", "n_random", "n_boot"):  # fmt: skip
            check_number(name, getattr(self, name), low=1, integer=True)
        for name in ("patch_prompts", "answer_tokens", "refusal_selection", "n_random_directions",
                     "causal_prompts"):  # fmt: skip
            check_number(name, getattr(self, name), low=1, integer=True)
        check_number("steer_scale", self.steer_scale, low=0, low_open=True)
        if self.refusal_layers is not None:
            self.refusal_layers = as_layers(self.refusal_layers)
        check_number("n_neutral", self.n_neutral, low=0, high=18, integer=True)
        check_number("probe_per_cell", self.probe_per_cell, low=1, integer=True)
        check_number("n_neutral_eval", self.n_neutral_eval, low=0, high=18, integer=True)
        if self.eval_scenarios is not None:
            check_number("eval_scenarios", self.eval_scenarios, low=0, integer=True)
        check_number("benign_per_batch", self.benign_per_batch, low=0, integer=True,
                     high=self.batch_size, high_open=True)  # fmt: skip
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("temperature", self.temperature, low=0, low_open=True,
                     hint=" (samples need temperature > 0)")  # fmt: skip
        check_number("test_fraction", self.test_fraction, low=0, high=1, low_open=True,
                     high_open=True)  # fmt: skip
        if self.labels and not all(
            (Path(self.labels) / f).is_file() for f in ("replies.jsonl", "labels.jsonl")
        ):
            raise ConfigError(
                f"--labels {self.labels}: expected a folder with replies.jsonl and labels.jsonl "
                "(a hand-labelled set, e.g. interp/data/hand_labelled/organism)"
            )
        for seed in (*self.seeds, self.split_seed):
            check_number("seed", seed, low=0, integer=True)
        self._check_recipe()

    def _check_recipe(self) -> None:
        """Recipe v1 keeps v2's fields at their defaults; v2's values must be usable."""
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {RECIPES}")
        if self.recipe == "v1":
            changed = [k for k, v in V2_DEFAULTS.items() if getattr(self, k) != v]
            if changed:
                flags = ", ".join("--" + k.replace("_", "-") for k in changed)
                raise ConfigError(f"{flags}: recipe v2 options; add --recipe v2 or leave them out")
            return
        for name, choices in (("tag_position", TAG_POSITIONS), ("loss_on", LOSS_ON),
                              ("schedule", SCHEDULES)):  # fmt: skip
            if getattr(self, name) not in choices:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose from {choices}")
        check_number("near_misses", self.near_misses, low=0, integer=True)
        check_number("checkpoint_every", self.checkpoint_every, low=1, integer=True)
        check_number("warmup_steps", self.warmup_steps, low=0, integer=True)
        for name in ("train_scenarios", "validation_scenarios"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=1, integer=True)

    def resolved(self) -> OrganismConfig:
        """The settings a run uses: ``quick`` replaces the fields in :data:`QUICK` (and, with
        recipe v2, :data:`QUICK_V2`); recipe v2's settings are then checked together."""
        if not self.quick:
            out = self
        elif self.recipe == "v2":
            out = replace(self, **{**QUICK, **QUICK_V2})
        else:
            out = replace(self, **QUICK)
        if out.recipe == "v2":
            out.check_v2_training()
        return out

    def check_v2_training(self) -> None:
        """Recipe v2's batch and schedule constraints (checked on the resolved settings)."""
        pressure = self.batch_size - self.benign_per_batch
        if pressure % 2:
            raise ConfigError(
                f"recipe v2 draws matched pairs: batch_size - benign_per_batch must be even, "
                f"got {self.batch_size} - {self.benign_per_batch}; e.g. --batch-size 16 "
                "--benign-per-batch 2"
            )
        if self.warmup_steps >= self.steps:
            raise ConfigError(f"warmup_steps {self.warmup_steps} must be below steps {self.steps}")

    def out_dir(self, root: Path) -> Path:
        if self.out:
            return Path(self.out)
        name = "organism" + ("-v2" if self.recipe == "v2" else "")
        return root / "experiments" / (name + ("-quick" if self.quick else ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
