"""The probe base class: ``fit(X, y)``, ``score(X)``, ``predict(X)``, ``save``, ``load``.

A probe maps activations ``[..., d]`` to a score per vector; higher means label 1 (here:
"the answer diverges from the reasoning"). ``score_set`` scores a cached activation set
after checking it was made by the probe's model, at its hook, with its token selection.
``predict`` compares the score with the probe's ``threshold``. A saved probe is a folder
with ``probe.safetensors`` (its tensors) and ``probe.json`` (its kind, settings, threshold
and :class:`ProbeMeta`: which model, hook and token selection it reads, plus the checksums of
its files and of its own contents), so applying it to activations of another model or hook,
or loading an edited or damaged probe, fails loudly instead of giving silent nonsense.

This package never imports ``interp``: a probe can be fitted on any tensor.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import torch
from jaxtyping import Bool, Float
from safetensors.torch import load_file, save
from torch import Tensor

from probes.io import (
    SEAL_KEY,
    UncheckedArtifactWarning,
    atomic_write,
    check_checksums,
    check_seal,
    record_checksums,
    seal,
)

FORMAT_VERSION = 1


class ProbeMismatchError(ValueError):
    """A probe applied to activations it was not trained on (other model, hook or tokens)."""


class NotFittedError(RuntimeError):
    """``score`` or ``save`` called before ``fit``."""


@dataclass
class ProbeMeta:
    """What a probe reads. Fields left ``None`` are not checked."""

    model_name: str | None = None
    model_fingerprint: str | None = None
    hook: str | None = None
    tokens: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ActivationSource(Protocol):
    """What :meth:`Probe.score_set` reads: cached activations by hook, with the model and
    token selection that produced them (``interp.cache.ActivationSet`` is one)."""

    @property
    def model_fingerprint(self) -> str: ...

    @property
    def tokens(self) -> str: ...

    @property
    def hooks(self) -> tuple[str, ...]: ...

    def __getitem__(self, hook: str) -> Tensor: ...


def check_xy(X: Tensor, y: Tensor | None = None) -> None:
    """Shape checks shared by every probe; errors say what was expected."""
    if X.ndim != 2:
        raise ValueError(f"X must be [n, d] activations, got shape {tuple(X.shape)}")
    if y is not None:
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must be [n] with n = {len(X)}, got shape {tuple(y.shape)}")
        values = set(torch.unique(y).tolist())
        if not values <= {0, 1} or len(values) < 2:
            raise ValueError(f"y must hold both labels 0 and 1, got values {sorted(values)}")


class Probe(ABC):
    """A linear read-out of activations. Subclasses implement ``fit``, ``score``,
    ``direction`` and their tensor state."""

    kind: ClassVar[str]

    def __init__(self, meta: ProbeMeta | None = None) -> None:
        self.meta = meta or ProbeMeta()
        self.threshold = 0.0
        self.d_in: int | None = None

    # --- what each probe defines ---------------------------------------------------------

    @abstractmethod
    def fit(self, X: Float[Tensor, "n d"], y: Tensor) -> Self:
        """Fit on activations ``X`` and 0/1 labels ``y``; returns ``self``."""

    @abstractmethod
    def _score(self, X: Float[Tensor, "n d"]) -> Float[Tensor, " n"]: ...

    @property
    @abstractmethod
    def direction(self) -> Float[Tensor, " d"]:
        """Unit vector in activation space along which the score grows."""

    @abstractmethod
    def state(self) -> dict[str, Tensor]:
        """Tensors that define the fitted probe."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable)."""

    @abstractmethod
    def load_state(self, tensors: dict[str, Tensor]) -> None: ...

    # --- shared behaviour ----------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self.d_in is not None

    def score(self, X: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch"]:
        """Decision score per activation vector (higher = label 1), on the device of ``X``.

        ``X`` is ``[n, d]`` or any ``[..., d]`` (e.g. ``[batch, pos, d]`` per-token
        activations); the score keeps the leading shape.
        """
        if not self.fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit(X, y) first")
        if X.ndim < 1 or X.shape[-1] != self.d_in:
            raise ProbeMismatchError(
                f"X has shape {tuple(X.shape)} but the probe was fitted on {self.d_in} features "
                f"(it reads [..., {self.d_in}]): activations of another model or site?"
            )
        flat = X.reshape(-1, X.shape[-1])
        return self._score(flat.float()).reshape(X.shape[:-1])

    def score_set(self, acts: ActivationSource, hook: str | None = None) -> Float[Tensor, " n"]:
        """Scores of a cached activation set at the probe's hook (or ``hook``), after checking
        that the set comes from the probe's model and token selection."""
        hook = hook or self.meta.hook
        if hook is None:
            raise ProbeMismatchError(
                "the probe does not record its hook; pass hook=... or save it with "
                "ProbeMeta(hook=...)"
            )
        if hook not in acts.hooks:
            raise ProbeMismatchError(
                f"the activation set holds hooks {list(acts.hooks)}, not the probe's {hook!r}; "
                "cache the probe's hook"
            )
        self.check_compatible(
            model_fingerprint=acts.model_fingerprint, hook=hook, tokens=acts.tokens
        )
        X = acts[hook]
        return self.score(X.to(self.direction.device))

    def predict(self, X: Float[Tensor, "*batch d"]) -> Bool[Tensor, "*batch"]:
        return self.score(X) >= self.threshold

    def check_compatible(
        self,
        *,
        model_fingerprint: str | None = None,
        hook: str | None = None,
        tokens: str | None = None,
    ) -> None:
        """Raise :class:`ProbeMismatchError` if the given inputs differ from the probe's."""
        wanted = {"model_fingerprint": model_fingerprint, "hook": hook, "tokens": tokens}
        for name, value in wanted.items():
            mine = getattr(self.meta, name)
            if value is not None and mine is not None and value != mine:
                raise ProbeMismatchError(
                    f"probe was trained on {name}={mine!r} (model {self.meta.model_name!r}) but "
                    f"is applied to {name}={value!r}; cache activations of the probe's own "
                    "model, hook and tokens, or train a new probe"
                )

    def to(self, device: str | torch.device) -> Self:
        self.load_state({k: v.to(device) for k, v in self.state().items()})
        return self

    def state_bytes(self) -> bytes:
        """The bytes :meth:`save` writes to ``probe.safetensors`` (its tensors on the CPU):
        their checksum identifies the fitted probe (a saved eraser records it)."""
        if not self.fitted:
            raise NotFittedError("cannot save a probe that is not fitted")
        return save({k: v.detach().cpu().contiguous() for k, v in self.state().items()})

    def save(self, path: str | Path, with_files: Sequence[str] = ()) -> Path:
        """Write ``probe.safetensors`` and ``probe.json`` into folder ``path``.

        ``probe.json`` records the size and checksum of ``probe.safetensors`` and of the
        files ``with_files`` already in the folder (a stance eraser) under ``files``, and the
        checksum of its own contents under ``blake2b``; :meth:`load` checks both."""
        data = self.state_bytes()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / TENSORS, lambda p: p.write_bytes(data))
        config = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "settings": self.settings(),
            "threshold": self.threshold,
            "d_in": self.d_in,
            "meta": asdict(self.meta),
            "files": record_checksums(folder, [TENSORS, *with_files]),
        }
        text = json.dumps(seal(config), indent=2)
        atomic_write(folder / "probe.json", lambda p: p.write_text(text))
        return folder

    def tensor_shapes(self, d_in: int) -> dict[str, tuple[int, ...]] | None:
        """The shape of each tensor of a probe fitted on ``d_in`` features, checked by
        :meth:`load`; ``None`` (the default) checks only the tensor names."""
        return None

    @staticmethod
    def load(path: str | Path, device: str | torch.device = "cpu") -> Probe:
        """Load any saved probe; the kind recorded in ``probe.json`` picks the class.

        Everything read is checked before it is used: ``probe.json`` parses and holds exactly
        the keys :meth:`save` writes, its kind is registered and accepts the settings, the
        threshold is finite, ``d_in`` a positive integer, the hook (if set) a residual-stream
        hook name; ``probe.safetensors`` holds the kind's tensors, of floating dtype, with
        shapes that fit ``d_in`` and finite values. Then the checksums: ``probe.json`` must
        match the checksum of its own contents and every file it records (its tensors, a
        stance eraser) its recorded size and checksum, so an edit that keeps the structure
        (other finite weights, another token selection) is refused too. Any failure raises
        :class:`ProbeMismatchError` naming the folder, the problem and the fix. A probe saved
        before checksums were recorded loads with a
        :class:`~probes.io.UncheckedArtifactWarning`.
        """
        folder = Path(path)
        if not (folder / "probe.json").is_file():
            raise FileNotFoundError(f"{folder} is not a saved probe (no probe.json)")
        config = _read_config(folder)
        probe = _probe_from_config(folder, config)
        tensors = _read_tensors(folder, probe, device)
        _check_checksums(folder, config)
        probe.load_state(tensors)
        return probe


#: The keys :meth:`Probe.save` writes to ``probe.json``.
CONFIG_KEYS = ("format_version", "kind", "settings", "threshold", "d_in", "meta")
#: The checksum keys :meth:`Probe.save` adds (absent from probes saved before them).
CHECKSUM_KEYS = ("files", SEAL_KEY)
#: The tensors' file in a saved probe's folder.
TENSORS = "probe.safetensors"
#: A residual-stream hook name, as ``interp.hooks.hook_name`` builds them.
HOOK_PATTERN = re.compile(r"^blocks\.\d+\.hook_(resid_pre|resid_mid|resid_post)$")
_RESAVE = "re-save the probe with probe.save(folder) or train it again"


def _bad(folder: Path, problem: str, fix: str = _RESAVE) -> ProbeMismatchError:
    return ProbeMismatchError(f"{folder} is not a usable saved probe: {problem}; {fix}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_config(folder: Path) -> dict[str, Any]:
    """``probe.json`` parsed, with exactly the keys :meth:`Probe.save` writes."""
    try:
        config = json.loads((folder / "probe.json").read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise _bad(folder, f"probe.json is not UTF-8 text ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise _bad(
            folder, f"probe.json is not valid JSON ({err.msg} at line {err.lineno})"
        ) from None
    if not isinstance(config, dict):
        raise _bad(folder, f"probe.json holds a {type(config).__name__}, not a JSON object")
    missing = [k for k in CONFIG_KEYS if k not in config]
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(CHECKSUM_KEYS))
    if missing:
        raise _bad(folder, f"probe.json lacks the keys {missing}")
    if unknown:
        raise _bad(
            folder,
            f"probe.json has unknown keys {unknown} (expected exactly {list(CONFIG_KEYS)} "
            f"and {list(CHECKSUM_KEYS)})",
            "remove them, or re-save the probe with probe.save(folder)",
        )
    if config["format_version"] != FORMAT_VERSION:
        raise _bad(
            folder,
            f"format_version is {config['format_version']!r}; this version of probes reads "
            f"{FORMAT_VERSION}",
        )
    return config


def _check_checksums(folder: Path, config: dict[str, Any]) -> None:
    """``probe.json`` matches the checksum of its contents and each file it records its size
    and checksum; a probe saved without them (an older version) is read with a warning."""
    present = [k for k in CHECKSUM_KEYS if k in config]
    if not present:
        warnings.warn(
            f"{folder}: saved without checksums (by an older version), so an edit that keeps "
            f"its structure cannot be detected; {_RESAVE} to record them",
            UncheckedArtifactWarning,
            stacklevel=4,
        )
        return
    if len(present) < len(CHECKSUM_KEYS):
        missing = sorted(set(CHECKSUM_KEYS) - set(present))
        raise _bad(folder, f"probe.json has {present} but lacks {missing}")
    fix = f"{_RESAVE} (or restore the folder from a copy)"
    check_seal(config, where=folder / "probe.json", fix=fix, error=ProbeMismatchError)
    check_checksums(
        folder,
        config["files"],
        manifest="probe.json",
        fix=fix,
        error=ProbeMismatchError,
        required=[TENSORS],
    )


def _read_meta(folder: Path, raw: object) -> ProbeMeta:
    names = {f.name for f in fields(ProbeMeta)}
    if not isinstance(raw, dict) or set(raw) - names:
        raise _bad(folder, f"meta must be an object with keys among {sorted(names)}, got {raw!r}")
    for key in ("model_name", "model_fingerprint", "hook", "tokens"):
        if not isinstance(raw.get(key), str | None):
            raise _bad(folder, f"meta.{key} must be a string or null, got {raw[key]!r}")
    if not isinstance(raw.get("extra", {}), dict):
        raise _bad(folder, f"meta.extra must be an object, got {raw['extra']!r}")
    hook = raw.get("hook")
    if hook is not None and not HOOK_PATTERN.match(hook):
        raise _bad(
            folder,
            f"meta.hook {hook!r} is not a residual-stream hook name "
            "(blocks.<layer>.hook_resid_pre|resid_mid|resid_post)",
        )
    return ProbeMeta(**raw)


def _probe_from_config(folder: Path, config: dict[str, Any]) -> Probe:
    """The unfitted probe ``config`` describes, with its meta, threshold and ``d_in``."""
    from probes.registry import PROBES

    kind = config["kind"]
    if not isinstance(kind, str) or kind not in PROBES:
        raise _bad(
            folder,
            f"kind {kind!r} is not a registered probe kind ({', '.join(PROBES.names())})",
            "import the module that registers it, or re-save the probe",
        )
    settings = config["settings"]
    if not isinstance(settings, dict):
        raise _bad(folder, f"settings must be an object, got {settings!r}")
    try:
        probe = PROBES.get(kind)(**settings)
    except Exception as err:  # a TypeError for an unknown setting, a ValueError for a bad one
        raise _bad(folder, f"the {kind} probe refuses settings {settings!r} ({err})") from None
    threshold, d_in = config["threshold"], config["d_in"]
    if not _is_number(threshold) or not math.isfinite(threshold):
        raise _bad(folder, f"threshold must be a finite number, got {threshold!r}")
    if not isinstance(d_in, int) or isinstance(d_in, bool) or d_in < 1:
        raise _bad(folder, f"d_in must be a positive integer, got {d_in!r}")
    probe.meta = _read_meta(folder, config["meta"])
    probe.threshold = float(threshold)
    probe.d_in = d_in
    return probe


def _read_tensors(folder: Path, probe: Probe, device: str | torch.device) -> dict[str, Tensor]:
    """``probe.safetensors``, checked against the probe's kind and ``d_in``."""
    file = folder / TENSORS
    if not file.is_file():
        raise _bad(folder, "probe.safetensors is missing")
    try:
        tensors = load_file(file)
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise _bad(folder, f"probe.safetensors cannot be read ({err})") from None
    wanted = sorted(probe.state())
    if sorted(tensors) != wanted:
        raise _bad(
            folder,
            f"probe.safetensors holds tensors {sorted(tensors)}; a {probe.kind} probe has {wanted}",
        )
    assert probe.d_in is not None  # set by _probe_from_config
    shapes = probe.tensor_shapes(probe.d_in) or {}
    for name in wanted:
        tensor = tensors[name]
        if name in shapes and tuple(tensor.shape) != shapes[name]:
            raise _bad(
                folder,
                f"tensor {name!r} has shape {tuple(tensor.shape)}, expected {shapes[name]} "
                f"for d_in={probe.d_in}",
            )
        if not tensor.is_floating_point():
            raise _bad(folder, f"tensor {name!r} has dtype {tensor.dtype}, expected a float type")
        if not bool(torch.isfinite(tensor).all()):
            raise _bad(folder, f"tensor {name!r} holds NaN or infinite values")
    return {k: v.to(device) for k, v in tensors.items()}
