"""``finetune(config)``: supervised fine-tuning with resumable checkpoints.

The plain Hugging Face model (not the bridge) is trained with AdamW on
:func:`interp.finetune.data.build_examples`, loss on the assistant's reply only (or, with
``loss_on="answer"``, on its answer part only), at a rate set by
:func:`interp.finetune.schedule.lr_factor` (optional warm-up, then constant, linear or cosine
decay). LoRA adapters
(q, k, v, o, gate, up, down projections) are merged into the weights before saving, so the
result is an ordinary checkpoint that :func:`interp.models.load_model` loads by name.

On disk, under ``<cache>/models/``:

- ``<name>.checkpoint/``: ``latest.json`` names the newest ``step-NNNNNN/`` folder (trainable
  weights, optimizer state, RNG state, loss curve and the run's settings; safetensors and JSON,
  each file checksummed: see :mod:`interp.finetune.checkpoint`). Each step folder is written
  under a temporary name and renamed, and ``latest.json`` is replaced atomically, so a crash
  leaves the previous checkpoint usable. A rerun with the same settings resumes from it and
  ends with the same weights as an uninterrupted run; other settings are refused. A damaged
  checkpoint is reported by name and skipped (the run falls back to an older one or starts
  over), never trusted. With ``keep_checkpoints``, every checkpoint (and one of the last
  step) stays after training, for :mod:`interp.finetune.steps` to choose a step from.
- ``<name>/``: the final model and tokenizer (``save_pretrained``) plus ``finetune.json``
  (base model and fingerprint, data hash, hyper-parameters, loss curve, wall time, library
  versions). Written as ``<name>.partial/`` and renamed. A rerun with the same settings
  finds it and skips training.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.artifacts import check_same, library_versions, publish_folder, read_json
from interp.data.scenarios import load_bank
from interp.data.split import split_bank
from interp.data.transcripts import Transcript, dataset_hash
from interp.finetune.checkpoint import (
    apply_checkpoint,
    find_checkpoint,
    save_checkpoint,
)
from interp.finetune.checkpoint import trainable as _trainable
from interp.finetune.config import FinetuneConfig, FinetuneError
from interp.finetune.data import (
    IGNORE_INDEX,
    batch_schedule,
    build_examples,
    collate,
    tokenize_example,
)
from interp.finetune.schedule import lr_factor
from interp.models import load_hf_model, model_fingerprint
from interp.models.checkpoints import checkpoint_fingerprint
from interp.models.placement import resolve_device
from interp.paths import cache_root

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MANIFEST = "finetune.json"


@dataclass
class FinetuneResult:
    name: str
    path: Path  # the saved model (absent when the run stopped early, see ``finished``)
    manifest: dict[str, Any]
    skipped: bool  # True when an existing model with the same settings was found
    finished: bool = True  # False when ``stop_after`` stopped it (a checkpoint was left)

    @property
    def losses(self) -> list[float]:
        return self.manifest["losses"]


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def checkpoint_dir(name: str) -> Path:
    return cache_root() / "models" / f"{name}.checkpoint"


def _check_same(found: dict[str, Any], wanted: dict[str, Any], where: Path) -> None:
    """Refuse a model or checkpoint folder made with other settings than this run's."""
    check_same(
        found,
        wanted,
        where=where,
        fix=f"delete it (rm -r {where}) or choose another --name",
        error=FinetuneError,
    )


# --- the loss -------------------------------------------------------------------------------


def reply_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (reply) tokens: the same value as a
    Hugging Face causal LM's ``loss``, but the unembedding runs on those positions only
    (about 40% of an example's tokens), which saves a fifth of a step on SmolLM2."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = core.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    logits = core.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


# --- the run ---------------------------------------------------------------------------------


def _already_trained(out: Path, identity: dict[str, Any], name: str) -> FinetuneResult | None:
    """The finished model in ``out`` if it was made with these settings (training is then
    skipped), None if there is none; a folder of other settings, or not made here, is refused."""
    if not out.exists():
        return None
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise FinetuneError(
            f"{out} exists but has no {MANIFEST}: it was not made by interp.finetune; "
            "move it away or choose another --name"
        )
    manifest = read_json(manifest_path, error=FinetuneError)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("identity"), dict):
        raise FinetuneError(
            f"{manifest_path}: no 'identity' record of the run's settings; "
            f"delete the folder (rm -r {out}) to train again"
        )
    _check_same(manifest["identity"], identity, out)
    print(f"{name}: already trained with these settings in {out}; skipping training.")
    return FinetuneResult(name, out, manifest, skipped=True)


def _trainable_model(
    config: FinetuneConfig, model: torch.nn.Module, device: torch.device
) -> torch.nn.Module:
    """``model`` ready to train on ``device``: torch is seeded first (LoRA's initial adapter
    weights are random), then LoRA adapters are added when ``config.method`` is ``lora``."""
    torch.manual_seed(config.seed)
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=0.0,
            target_modules=list(LORA_TARGETS),
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    model.to(device)
    return model


@dataclass
class _Run:
    """A fine-tuning run in progress: the model, its optimizer and the examples of every step,
    and what a checkpoint records (settings, loss curve, wall time so far)."""

    config: FinetuneConfig
    identity: dict[str, Any]  # the run's settings and data hash plus the base's fingerprint
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    examples: list[Any]  # tokenized examples
    schedule: list[list[int]]  # example indices of each step
    pad_id: int
    device: torch.device
    losses: list[float] = field(default_factory=list)
    wall_before: float = 0.0  # seconds spent by the runs this one resumes
    started: float = field(default_factory=time.perf_counter)

    def wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def state(self) -> dict[str, Any]:
        """What a checkpoint's ``state.json`` records (besides the step)."""
        return {
            "identity": self.identity,
            "config": self.config.to_dict(),
            "losses": self.losses,
            "wall_s": self.wall_s(),
        }

    def resume(self, ckpt_dir: Path, name: str) -> int:
        """Load the newest checkpoint in ``ckpt_dir`` (one of other settings is refused);
        returns the step to continue from, 0 without a checkpoint."""
        found = find_checkpoint(ckpt_dir)
        if found is None:
            return 0
        _check_same(found.state["identity"], self.identity, ckpt_dir)
        apply_checkpoint(found, self.model, self.optimizer)
        self.losses, self.wall_before = list(found.state["losses"]), found.state["wall_s"]
        print(f"{name}: resuming from step {found.step} ({found.folder})")
        return found.step

    def train(self, start: int, stop_at: int, ckpt_dir: Path, name: str) -> None:
        """Run steps ``start`` to ``stop_at - 1``, writing a checkpoint every
        ``checkpoint_every`` steps and at ``stop_at`` unless training is then finished."""
        config = self.config
        self.started = time.perf_counter()
        self.model.train()
        bar = tqdm(total=config.steps, initial=start, desc=f"fine-tune {name}",
                   disable=not config.progress)  # fmt: skip
        for step in range(start, stop_at):
            rate = config.learning_rate * lr_factor(
                step, config.steps, config.warmup_steps, config.schedule
            )
            for group in self.optimizer.param_groups:
                group["lr"] = rate
            batch = collate([self.examples[i] for i in self.schedule[step]], self.pad_id)
            loss = reply_loss(self.model, {k: v.to(self.device) for k, v in batch.items()})
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(_trainable(self.model).values()), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.losses.append(round(float(loss.detach()), 6))
            bar.update(1)
            bar.set_postfix(loss=f"{self.losses[-1]:.3f}")
            done = step + 1
            keep = config.keep_checkpoints
            if (done < config.steps or keep) and (
                done == stop_at or (config.checkpoint_every and done % config.checkpoint_every == 0)
            ):
                save_checkpoint(
                    ckpt_dir, done, self.model, self.optimizer, self.state(), prune=not keep
                )
        bar.close()


def _probe_sides(bank: list[Any], config: FinetuneConfig) -> dict[str, list[str]]:
    """The probes' split of the bank (the examples' split unless the caller names another)."""
    train_ids, test_ids = split_bank(bank, config.test_fraction, config.split_seed)
    return {"train_scenarios": train_ids, "test_scenarios": test_ids}


def save_model(out: Path, model: Any, tokenizer: Any, manifest: dict[str, Any]) -> None:
    """Publish ``model``, ``tokenizer`` and ``manifest`` (``finetune.json``, completed with
    the folder's fingerprint as :func:`interp.models.load_model` computes it) as ``out``."""
    with publish_folder(out) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        manifest["fingerprint"] = checkpoint_fingerprint(partial)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def finetune(
    config: FinetuneConfig,
    stop_after: int | None = None,
    examples: tuple[list[Transcript], list[Transcript]] | None = None,
    scenarios: dict[str, list[str]] | None = None,
) -> FinetuneResult:
    """Train ``config.base`` on the ``config.strategy`` examples and save it as
    ``<cache>/models/<config.model_name>/``.

    Skips training when that folder already holds a model made with the same settings;
    resumes from ``<name>.checkpoint/`` when one exists. ``stop_after`` ends this call after
    that many steps with a checkpoint written (time-boxed runs, tests of resuming).
    ``examples``: ``(pressure, benign)`` transcripts to train on instead of the strategy's
    (e.g. :mod:`interp.organism`; ``config.strategy`` is then unused), hashed into the identity;
    ``scenarios``: the sides of the split those examples come from (``train_scenarios`` and
    ``test_scenarios``, as the manifest records them), when it is not the probes' split.
    """
    name = config.model_name
    out, ckpt_dir = model_dir(name), checkpoint_dir(name)
    bank = load_bank()
    pressure, benign = examples or build_examples(
        config.strategy, config.test_fraction, config.split_seed, bank=bank
    )
    examples = pressure + benign
    identity = {**config.identity(), "data_hash": dataset_hash(examples)}
    trained = _already_trained(out, identity, name)
    if trained is not None:
        return trained

    device = resolve_device(config.device)
    base_name, model, tokenizer = load_hf_model(config.base)
    base_fingerprint = model_fingerprint(config.base)  # as load_model(config.base) gives it
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenized = [tokenize_example(t, tokenizer, config.max_length, config.loss_on)
                 for t in examples]  # fmt: skip
    schedule = batch_schedule(
        len(pressure), len(benign), config.steps, config.batch_size,
        config.benign_per_batch, config.seed, config.pressure_group,
    )  # fmt: skip
    model = _trainable_model(config, model, device)
    optimizer = torch.optim.AdamW(
        list(_trainable(model).values()), lr=config.learning_rate, weight_decay=0.0
    )
    run = _Run(config, {**identity, "base_fingerprint": base_fingerprint}, model, optimizer,
               tokenized, schedule, tokenizer.pad_token_id, device)  # fmt: skip
    start = run.resume(ckpt_dir, name)
    stop_at = config.steps if stop_after is None else min(config.steps, start + stop_after)
    run.train(start, stop_at, ckpt_dir, name)
    if stop_at < config.steps:
        return FinetuneResult(name, out, {**run.state(), "step": stop_at}, False, finished=False)

    model.eval()
    if config.method == "lora":
        model = model.merge_and_unload()
    sides = scenarios or _probe_sides(bank, config)
    manifest = {
        "name": name,
        "base": config.base,
        "base_name": base_name,
        "base_fingerprint": base_fingerprint,
        "identity": identity,
        "config": config.to_dict(),
        "data": {
            "hash": identity["data_hash"],
            "n_pressure": len(pressure),
            "n_benign": len(benign),
            "n_truncated": sum(t.truncated for t in tokenized),
            **sides,
        },
        "losses": run.losses,
        "wall_s": round(run.wall_s(), 2),
        "device": str(device),
        "versions": library_versions(),
    }
    save_model(out, model, tokenizer, manifest)
    if not config.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    print(f"{name}: saved to {out} (loss {run.losses[0]:.3f} -> {run.losses[-1]:.3f})")
    return FinetuneResult(name, out, manifest, skipped=False)
