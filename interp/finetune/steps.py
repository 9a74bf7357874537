"""Kept checkpoints of a fine-tune as models: list them, rebuild the model of one step, and
publish a chosen step as an ordinary model folder.

A run with ``keep_checkpoints`` leaves every ``step-NNNNNN/`` of ``<name>.checkpoint/``
(:mod:`interp.finetune.checkpoint`) in place, the last step's included. :func:`kept_steps`
lists them, :func:`model_at_step` rebuilds the model of one (the base model with that step's
trainable weights, LoRA merged; every file checked against its checksum first) and
:func:`publish_step` saves a step under another name, with a ``finetune.json`` that names the
run, the step and how it was chosen, so ``load_model(name)`` loads it and a rerun with the same
run and step reuses it. Choosing the step is the caller's business (the organism chooses by a
validation metric: :mod:`interp.organism.selection`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from interp.artifacts import library_versions
from interp.finetune.checkpoint import DamagedCheckpoint, apply_weights, read_checkpoint
from interp.finetune.config import FinetuneConfig, FinetuneError
from interp.finetune.train import (
    FinetuneResult,
    _already_trained,
    _check_same,
    _trainable_model,
    checkpoint_dir,
    model_dir,
    save_model,
)


def load_base(config: FinetuneConfig) -> tuple[Any, Any]:
    """The base model of run ``config`` and its tokenizer, as training loads them."""
    from interp.models import load_hf_model

    _, model, tokenizer = load_hf_model(config.base)
    return model, tokenizer


def kept_steps(name: str) -> list[int]:
    """The steps of the checkpoint folders of run ``name``, in order (empty without any)."""
    folder = checkpoint_dir(name)
    if not folder.is_dir():
        return []
    found = (p.name.removeprefix("step-") for p in folder.iterdir() if p.is_dir())
    return sorted(int(s) for s in found if s.isdigit())


def model_at_step(
    config: FinetuneConfig,
    step: int,
    identity: dict[str, Any],
    base: tuple[Any, Any] | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """``(hf_model, tokenizer, checkpoint state)`` of run ``config`` at a kept ``step``: the
    base model with that step's trainable weights (LoRA merged), in eval mode. ``identity``
    is the run's (its manifest's ``identity``): a checkpoint of other settings is refused.
    ``base``: the base ``(hf_model, tokenizer)`` already loaded (:func:`load_base`), copied
    instead of loaded again when several steps are read."""
    from interp.models.placement import resolve_device

    folder = checkpoint_dir(config.model_name) / f"step-{step:06d}"
    if not folder.is_dir():
        kept = kept_steps(config.model_name)
        raise FinetuneError(
            f"{folder}: no checkpoint of step {step} (kept: {kept or 'none'}); train with "
            "keep_checkpoints=True to keep every checkpoint"
        )
    try:
        checkpoint = read_checkpoint(folder)
    except DamagedCheckpoint as err:
        raise FinetuneError(f"{err}; delete {folder} or train the run again") from None
    saved = {k: v for k, v in checkpoint.state["identity"].items() if k != "base_fingerprint"}
    _check_same(saved, identity, folder)
    model, tokenizer = load_base(config) if base is None else base
    if base is not None:
        model = copy.deepcopy(model)
    model = _trainable_model(config, model, resolve_device(config.device))
    apply_weights(checkpoint, model)
    if config.method == "lora":
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer, checkpoint.state


def publish_step(
    config: FinetuneConfig,
    run: FinetuneResult,
    step: int,
    name: str,
    chosen_by: dict[str, Any],
    record: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Save the model of ``run`` (made with ``config``) at ``step`` as
    ``<cache>/models/<name>/``, or reuse it when that folder holds the same run, step and
    ``chosen_by`` (the settings of the choice). ``record`` (what the choice measured) is
    written into the manifest beside them."""
    out: Path = model_dir(name)
    identity = {"run": run.manifest["identity"], "step": step, "chosen_by": chosen_by}
    reused = _already_trained(out, identity, name)
    if reused is not None:
        return reused
    model, tokenizer, state = model_at_step(config, step, run.manifest["identity"])
    manifest = {
        **{k: v for k, v in run.manifest.items() if k not in ("fingerprint", "versions")},
        "name": name,
        "run": run.name,
        "step": step,
        "identity": identity,
        "losses": state["losses"],
        "wall_s": state["wall_s"],
        "selection": record or {},
        "versions": library_versions(),
    }
    save_model(out, model, tokenizer, manifest)
    print(f"{name}: step {step} of {run.name} saved to {out}")
    return FinetuneResult(name, out, manifest, skipped=False)
