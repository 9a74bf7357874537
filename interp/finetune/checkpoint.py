"""Fine-tuning checkpoints on disk: safetensors and JSON only, every file checksummed and
verified before anything in it is used.

``<name>.checkpoint/`` holds ``latest.json`` (``{"step": N, "dir": "step-NNNNNN"}``) and
``step-NNNNNN/`` folders, each with

- ``trainable.safetensors``: the trainable weights;
- ``optimizer.safetensors``: the optimizer's state tensors (``state.<param>.<key>``); its
  param groups and any non-tensor state are JSON in the file's metadata;
- ``rng.safetensors``: torch's CPU generator state (and each CUDA device's), uint8 tensors;
- ``state.json``: the run's settings, loss curve, wall time and step, and under ``files``
  the size and blake2b checksum of each file above (written last).

Nothing is unpickled: a pickle runs code when it is loaded, and a checkpoint folder is easy to
plant a file in. Checkpoints of older versions (``optimizer.pt``, ``rng.pt``) are never read.

:func:`find_checkpoint` tries the step that ``latest.json`` names, then any other step folder,
newest first. A damaged one (``latest.json`` not JSON or naming a missing step, a file missing,
truncated or with another checksum, a ``state.json`` that is not JSON) is reported with a
:class:`~interp.finetune.config.CheckpointWarning` that names the file and the problem, and
skipped; the warning says whether the run falls back to an older checkpoint or restarts from
step 0. Nothing of a damaged checkpoint is used.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import (
    check_checksums,
    publish_folder,
    read_json,
    record_checksums,
    write_json_atomic,
)
from interp.finetune.config import CheckpointWarning, FinetuneError

WEIGHTS, OPTIMIZER, RNG, STATE = (
    "trainable.safetensors",
    "optimizer.safetensors",
    "rng.safetensors",
    "state.json",
)
#: The files of a step folder that ``state.json`` records (size and checksum).
CHECKSUMMED = (WEIGHTS, OPTIMIZER, RNG)
LATEST = "latest.json"
_STEP_DIR = re.compile(r"step-(\d{6,})")
#: What ``state.json`` must hold besides ``files``, and of which type.
_STATE_KEYS = {"step": int, "identity": dict, "losses": list, "wall_s": (int, float)}


class DamagedCheckpoint(Exception):
    """A checkpoint file that is missing, truncated, altered or unreadable (the message names
    it); the checkpoint is skipped."""


@dataclass
class Checkpoint:
    """A verified checkpoint, read into memory."""

    folder: Path
    state: dict[str, Any]  # state.json
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # an optimizer state dict
    rng: dict[str, torch.Tensor]  # "torch", "cuda.0", "cuda.1", ...

    @property
    def step(self) -> int:
        return self.state["step"]


def _warn(message: str) -> None:
    warnings.warn(message, CheckpointWarning, stacklevel=3)


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


# --- writing ---------------------------------------------------------------------------------


def _optimizer_file(state_dict: dict[str, Any], path: Path) -> None:
    """Write an optimizer state dict: tensors as safetensors, the rest as JSON metadata."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for param, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                other.setdefault(str(param), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "state": other}
    save_file(tensors, path, metadata={"optimizer": json.dumps(meta)})


def _rng_states() -> dict[str, torch.Tensor]:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda.{i}"] = state
    return rng


def save_checkpoint(
    directory: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: Any,
    state: dict[str, Any],
    prune: bool = True,
) -> None:
    """Write ``step-NNNNNN/`` (built as ``step-NNNNNN.partial/``, then renamed), point
    ``latest.json`` at it and (``prune``) delete older step folders."""
    from safetensors.torch import save_file

    final = directory / f"step-{step:06d}"
    weights = {n: p.detach().to("cpu").contiguous().clone() for n, p in trainable(model).items()}
    with publish_folder(final) as tmp:
        save_file(weights, tmp / WEIGHTS)
        _optimizer_file(optimizer.state_dict(), tmp / OPTIMIZER)
        save_file(_rng_states(), tmp / RNG)
        files = record_checksums(tmp, CHECKSUMMED)
        (tmp / STATE).write_text(json.dumps({**state, "step": step, "files": files}, indent=2))
    write_json_atomic(directory / LATEST, {"step": step, "dir": final.name})
    for old in directory.glob("step-*") if prune else ():
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)


# --- reading ---------------------------------------------------------------------------------


def _read_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE
    if not path.is_file():
        raise DamagedCheckpoint(f"{path}: missing")
    state = read_json(path, error=DamagedCheckpoint)
    if not isinstance(state, dict) or not isinstance(state.get("files"), dict):
        old = [p.name for p in folder.iterdir() if p.suffix == ".pt"]
        if old:
            raise DamagedCheckpoint(
                f"{folder}: written by an older interp.finetune ({', '.join(sorted(old))} are "
                "pickles, which are never loaded: unpickling can run code)"
            )
        raise DamagedCheckpoint(f"{path}: no 'files' record of sizes and checksums")
    for key, kind in _STATE_KEYS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise DamagedCheckpoint(f"{path}: {key!r} is missing or not a {kind}")
    match = _STEP_DIR.fullmatch(folder.name)
    if match is None or int(match.group(1)) != state["step"]:
        raise DamagedCheckpoint(f"{path}: records step {state['step']}, not {folder.name}")
    return state


def _verify_files(folder: Path, files: dict[str, Any]) -> None:
    """Raise :class:`DamagedCheckpoint` unless each checkpoint file has the recorded size and
    checksum; warn about (and never read) any other file in the folder."""
    unknown = sorted(set(files) - set(CHECKSUMMED))
    if unknown:
        raise DamagedCheckpoint(f"{folder / STATE}: records files {unknown} of no checkpoint")
    check_checksums(folder, files, manifest=STATE, error=DamagedCheckpoint, required=CHECKSUMMED)
    for extra in sorted(set(p.name for p in folder.iterdir()) - {*CHECKSUMMED, STATE}):
        _warn(f"{folder / extra}: not a file of this checkpoint; ignored (never loaded)")


def _load_optimizer(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        meta = json.loads((handle.metadata() or {})["optimizer"])
        state: dict[int, dict[str, Any]] = {}
        for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
            _, param, name = key.split(".", 2)
            state.setdefault(int(param), {})[name] = handle.get_tensor(key)
    for param, values in meta["state"].items():
        state.setdefault(int(param), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def read_checkpoint(folder: Path) -> Checkpoint:
    """A step folder's checkpoint, verified and read into memory; raises
    :class:`DamagedCheckpoint` naming the file at fault."""
    from safetensors.torch import load_file

    state = _read_state(folder)
    _verify_files(folder, state["files"])
    try:
        weights = load_file(folder / WEIGHTS)
        optimizer = _load_optimizer(folder / OPTIMIZER)
        rng = load_file(folder / RNG)
    except Exception as err:  # a file that matches its checksum but cannot be read
        raise DamagedCheckpoint(f"{folder}: unreadable ({type(err).__name__}: {err})") from None
    cuda = {f"cuda.{i}" for i in range(len(rng) - 1)}
    if set(rng) != {"torch", *cuda} or any(t.dtype != torch.uint8 for t in rng.values()):
        raise DamagedCheckpoint(
            f"{folder / RNG}: not generator states (keys {sorted(rng)}; expected 'torch' and "
            "'cuda.0', 'cuda.1', ... as uint8 tensors)"
        )
    return Checkpoint(folder, state, weights, optimizer, rng)


def _candidates(directory: Path) -> list[Path]:
    """Step folders to try: the one ``latest.json`` names first, then the others, newest
    first. A bad ``latest.json`` is reported and the folders are tried without it."""
    named: Path | None = None
    latest = directory / LATEST
    if latest.is_file():
        try:
            pointer = read_json(latest, error=DamagedCheckpoint)
        except DamagedCheckpoint as err:
            _warn(str(err))
            pointer = None
        dir_name = pointer.get("dir") if isinstance(pointer, dict) else None
        if pointer is not None and not (
            isinstance(dir_name, str) and _STEP_DIR.fullmatch(dir_name)
        ):
            _warn(f"{latest}: names no step folder ({pointer!r})")
        elif dir_name is not None and not (directory / dir_name).is_dir():
            _warn(f"{latest}: names {dir_name}, which is missing")
        elif dir_name is not None:
            named = directory / dir_name
    others = sorted(
        (p for p in directory.iterdir() if p.is_dir() and _STEP_DIR.fullmatch(p.name)),
        key=lambda p: int(p.name[5:]),
        reverse=True,
    )
    return ([named] if named else []) + [p for p in others if p != named]


def find_checkpoint(directory: Path) -> Checkpoint | None:
    """The newest intact checkpoint in ``directory``, or None (no checkpoint, or none intact:
    training then starts from step 0). Every damaged file met on the way is reported with a
    :class:`CheckpointWarning`, and so is the choice made (fall back, or restart)."""
    if not directory.is_dir():
        return None
    damaged: list[str] = []
    for folder in _candidates(directory):
        try:
            found = read_checkpoint(folder)
        except DamagedCheckpoint as err:
            _warn(f"{err}; this checkpoint is not used")
            damaged.append(folder.name)
            continue
        if damaged:
            _warn(
                f"{directory}: falling back to the older intact checkpoint {folder.name} "
                f"(skipped: {', '.join(damaged)})"
            )
        return found
    if damaged or (directory / LATEST).exists():
        _warn(f"{directory}: no intact checkpoint; training restarts from step 0")
    return None


def apply_checkpoint(checkpoint: Checkpoint, model: torch.nn.Module, optimizer: Any) -> None:
    """Put a checkpoint's weights, optimizer state and generator states in place."""
    apply_weights(checkpoint, model)
    saved = checkpoint.optimizer
    for group, current in zip(saved["param_groups"], optimizer.param_groups, strict=False):
        for key, value in group.items():  # JSON made tuples (AdamW's betas) lists
            if isinstance(value, list) and isinstance(current.get(key), tuple):
                group[key] = tuple(value)
    optimizer.load_state_dict(saved)
    torch.set_rng_state(checkpoint.rng["torch"])
    cuda = [checkpoint.rng[f"cuda.{i}"] for i in range(len(checkpoint.rng) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def apply_weights(checkpoint: Checkpoint, model: torch.nn.Module) -> None:
    """Copy a checkpoint's trainable weights into ``model`` (the same trainable parameters:
    the same method, LoRA rank and targets)."""
    params = trainable(model)
    if set(checkpoint.weights) != set(params):
        raise FinetuneError(
            f"{checkpoint.folder}: its weights do not match the model being trained"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(checkpoint.weights[name].to(p.device, p.dtype))
