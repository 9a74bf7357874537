"""A probe fitted on stance-erased activations, saved and loaded with its eraser.

With ``--erase-stances`` (:mod:`interp.probe.erasure`) each layer's probe is fitted on
activations edited by a LEACE eraser. Applied later to fresh activations, it must see the
same edit, or its scores mean something else. :class:`ErasedProbe` pairs the fitted probe
with its eraser and scores ``probe.score(erase(X))``; it is a :class:`probes.Probe`, so
``score_set``, :func:`interp.probe.score_transcripts` and per-token scores
(:func:`interp.probe.score_tokens`: the edit is affine, so it commutes with mean pooling)
apply the edit without knowing about it.

On disk it is the inner probe's folder (``probe.safetensors``, ``probe.json``) plus
``eraser.safetensors`` (the eraser's tensors; its metadata names the hook, the erased
stances and the ``concept-erasure`` version), written atomically; ``probe.json`` records the
file under ``meta.extra["stance_eraser"]``. :func:`interp.probe.load_probe` reads both back;
``probes.Probe.load`` alone (which never imports ``interp``) returns the inner probe, which
expects erased activations: the ``meta.extra`` entry says so. ``probe.json`` records the
eraser's checksum beside its own file's, and the eraser records its probe's model, hook and
tensors' checksum, so an eraser copied from another run, a ``probe.json`` that no longer
names its eraser, or an eraser of another dtype is refused naming the folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Self

import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from interp.artifacts import atomic_write, blake2b_hex, file_blake2b
from interp.probe.erasure import STANCES, erase, eraser_to
from probes import Probe, ProbeMeta, ProbeMismatchError
from probes.base import TENSORS, NotFittedError

#: The eraser's file in a saved probe's folder, and the ``ProbeMeta.extra`` key naming it.
ERASER_FILE = "eraser.safetensors"
ERASER_KEY = "stance_eraser"
#: The dtype of a saved eraser's tensors: LEACE is fitted and applied in float64.
ERASER_DTYPE = torch.float64
_TENSORS = ("proj_left", "proj_right", "bias")


class ErasedProbe(Probe):
    """``probe`` reading activations after ``eraser``: ``score(X) = probe.score(erase(X))``.
    Its meta, threshold and settings are the inner probe's."""

    kind = "stance_erased"  # not a registered kind: saved as the inner probe + its eraser

    def __init__(self, probe: Probe, eraser: Any) -> None:  # no super().__init__: delegated
        if not probe.fitted:
            raise NotFittedError("ErasedProbe needs a fitted probe; fit it on erased activations")
        self.probe, self.eraser = probe, eraser
        probe.meta.extra[ERASER_KEY] = ERASER_FILE

    @property  # type: ignore[override]
    def meta(self) -> ProbeMeta:
        return self.probe.meta

    @meta.setter
    def meta(self, value: ProbeMeta) -> None:
        self.probe.meta = value

    @property  # type: ignore[override]
    def threshold(self) -> float:
        return self.probe.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.probe.threshold = value

    @property  # type: ignore[override]
    def d_in(self) -> int | None:
        return self.probe.d_in

    def fit(self, X: Float[Tensor, "n d"], y: Tensor) -> Self:
        """Refit the inner probe on ``X`` erased by the (already fitted) eraser."""
        self.probe.fit(erase(self.eraser, X), y)
        return self

    def _score(self, X: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        return self.probe.score(erase(self.eraser, X))

    @property
    def direction(self) -> Float[Tensor, " d"]:
        """The unit direction in raw activation space along which the score grows: the inner
        probe's direction ``u`` pulled back through the edit, ``P^T u`` normalised."""
        u = self.probe.direction
        left, right = self.eraser.proj_left, self.eraser.proj_right
        v = u.to(left.device, torch.float64)
        pulled = v - right.mH @ (left.mH @ v)
        return (pulled / pulled.norm().clamp_min(1e-12)).to(u.device, torch.float32)

    def state(self) -> dict[str, Tensor]:
        tensors = {f"probe.{k}": v for k, v in self.probe.state().items()}
        tensors.update({f"eraser.{k}": t for k, t in _eraser_tensors(self.eraser).items()})
        return tensors

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        from concept_erasure import LeaceEraser

        self.probe.load_state(
            {k.removeprefix("probe."): v for k, v in tensors.items() if k.startswith("probe.")}
        )
        self.eraser = LeaceEraser(*(tensors[f"eraser.{name}"] for name in _TENSORS))

    def settings(self) -> dict[str, Any]:
        return self.probe.settings()

    def save(self, path: str | Path, with_files: Sequence[str] = ()) -> Path:
        """The inner probe's folder plus :data:`ERASER_FILE` (written first, so a
        ``probe.json`` that names it is never read without it; ``probe.json`` records its
        checksum, and the eraser records the checksum of the probe's tensors)."""
        folder = Path(path)
        probe_sum = blake2b_hex(self.probe.state_bytes())
        save_eraser(self.eraser, folder / ERASER_FILE, self.probe.meta, probe_sum)
        return self.probe.save(folder, with_files=[ERASER_FILE, *with_files])


def _eraser_tensors(eraser: Any) -> dict[str, Tensor]:
    if eraser.bias is None:
        raise ValueError("the eraser has no bias (affine=False); fit it with affine=True")
    return {name: getattr(eraser, name) for name in _TENSORS}


def save_eraser(eraser: Any, path: Path, meta: ProbeMeta, probe_blake2b: str) -> None:
    """Write ``eraser``'s tensors (CPU, contiguous, float64 as fitted) to ``path``
    atomically, with what it belongs to as metadata: the probe's model (name, fingerprint),
    hook and the checksum of its ``probe.safetensors`` (``probe_blake2b``), the erased stances
    and the ``concept-erasure`` version."""
    tensors = {
        k: v.detach().cpu().to(ERASER_DTYPE).contiguous()
        for k, v in _eraser_tensors(eraser).items()
    }
    info = {
        "method": "leace",
        "hook": meta.hook or "",
        "model_name": meta.model_name or "",
        "model_fingerprint": meta.model_fingerprint or "",
        "probe_blake2b": probe_blake2b,
        "stances": json.dumps(STANCES),
        "concept_erasure": metadata.version("concept-erasure"),
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=info))


def _bad(folder: Path, problem: str) -> ProbeMismatchError:
    return ProbeMismatchError(
        f"{folder} is not a usable saved probe: {problem}; train it again "
        "(python -m interp.probe ... --erase-stances)"
    )


def _read_eraser(folder: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    file = folder / ERASER_FILE
    if not file.is_file():
        raise _bad(folder, f"probe.json names a stance eraser but {ERASER_FILE} is missing")
    try:
        with safe_open(str(file), framework="pt") as f:
            names = list(f.keys())  # a safe_open handle is not iterable
            return {k: f.get_tensor(k) for k in names}, dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise _bad(folder, f"{ERASER_FILE} cannot be read ({err})") from None


def load_eraser(folder: Path, probe: Probe, device: str | torch.device = "cpu") -> Any:
    """The eraser saved beside ``probe`` in ``folder``, checked against it: exactly the
    tensors LEACE stores, of float dtype, finite, shaped for ``probe.d_in`` features, saved
    for ``probe``'s hook."""
    from concept_erasure import LeaceEraser

    tensors, info = _read_eraser(folder)
    if sorted(tensors) != sorted(_TENSORS):
        raise _bad(folder, f"{ERASER_FILE} holds {sorted(tensors)}, expected {list(_TENSORS)}")
    d, k = probe.d_in, tensors["proj_left"].shape[-1]
    shapes = {"proj_left": (d, k), "proj_right": (k, d), "bias": (d,)}
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != shapes[name] or tensor.dtype != ERASER_DTYPE:
            raise _bad(
                folder,
                f"eraser tensor {name!r} in {folder / ERASER_FILE} is {tensor.dtype} of shape "
                f"{tuple(tensor.shape)}, expected {ERASER_DTYPE} (the dtype the edit is "
                f"computed in) of shape {shapes[name]} (the probe reads {d} features)",
            )
        if not bool(torch.isfinite(tensor).all()):
            raise _bad(folder, f"eraser tensor {name!r} holds NaN or infinite values")
    _check_owner(folder, probe, info)
    eraser = LeaceEraser(tensors["proj_left"], tensors["proj_right"], tensors["bias"])
    return eraser_to(eraser, device)


def _check_owner(folder: Path, probe: Probe, info: dict[str, str]) -> None:
    """The eraser was saved with this probe: same hook, model and probe tensors (erasers
    saved before the model and probe were recorded are checked for the hook only)."""
    wanted = {
        "hook": probe.meta.hook or "",
        "model_fingerprint": probe.meta.model_fingerprint or "",
        "probe_blake2b": file_blake2b(folder / TENSORS),
    }
    for key, value in wanted.items():
        if key != "hook" and key not in info:
            continue  # an older eraser: probe.json's own checksums decide
        if info.get(key) != value:
            raise _bad(
                folder,
                f"{ERASER_FILE} was saved for {key} {info.get(key)!r}, but the probe beside it "
                f"has {value!r}: the eraser belongs to another probe or run",
            )


def with_saved_eraser(probe: Probe, folder: Path, device: str | torch.device = "cpu") -> Probe:
    """``probe`` (loaded from ``folder``) paired with its saved eraser when its
    ``probe.json`` names one; ``probe`` itself otherwise."""
    name = probe.meta.extra.get(ERASER_KEY)
    if name is None:
        if (folder / ERASER_FILE).exists():
            raise _bad(
                folder,
                f"the folder holds {ERASER_FILE} but probe.json names no stance eraser "
                f"(meta.extra[{ERASER_KEY!r}]): the probe would read un-erased activations",
            )
        return probe
    if name != ERASER_FILE:
        raise _bad(folder, f"meta.extra[{ERASER_KEY!r}] is {name!r}, expected {ERASER_FILE!r}")
    return ErasedProbe(probe, load_eraser(folder, probe, device))
