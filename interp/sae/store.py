"""SAEs on disk: SAELens' own format plus our manifest, and a loader that checks both.

A saved SAE is a folder ``<cache>/saes/<name>/`` holding SAELens' ``cfg.json`` and
``sae_weights.safetensors`` (``sae_lens.SAE.load_from_disk(folder)`` reads it unaided) and
``manifest.json`` (model name and fingerprint, hook, data hash, our config, quality figures).
:func:`load_sae` refuses an SAE trained on another model or hook unless told otherwise, and
checks the folder before SAELens reads it (:func:`check_sae_files`): each JSON file parses,
``cfg.json`` agrees with the manifest (d_in, d_sae, architecture, hook), and the weights have
the shapes, dtype and finite values those say; then (:func:`verify_checksums`) the manifest
matches the checksum of its own contents and ``cfg.json`` and the weights the sizes and
checksums it records, so a flipped bit or an edited value is refused too. A damaged folder
raises :class:`SAEFormatError` naming the file, the problem and the fix. An SAE saved before
checksums were recorded loads with a :class:`~probes.io.UncheckedArtifactWarning`. Only
safetensors and JSON are read (never a pickle).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from interp.artifacts import (
    check_checksums,
    check_seal,
    read_json,
    record_checksums,
    seal,
    warn_unchecked,
    write_json_atomic,
)
from interp.models import LoadedModel
from interp.paths import cache_root

MANIFEST = "manifest.json"
SEAL_KEY = "blake2b"  # probes.io.SEAL_KEY (not imported: importing probes loads torch)
CFG = "cfg.json"  # SAELens' config
WEIGHTS = "sae_weights.safetensors"
FORMAT_VERSION = 1
#: Types of the manifest's fields (checked on load; JSON has no tuples, ints are not floats).
_FIELD_TYPES: dict[str, Any] = {
    "model_name": str, "model_fingerprint": str, "hook": str, "d_model": int, "d_sae": int,
    "architecture": str, "data_hash": str, "datasets": list, "n_train_transcripts": int,
    "n_train_tokens_unique": int, "config": dict, "quality": dict,
    "train_seconds": (int, float, type(None)), "activation_cache": (str, type(None)),
    "format_version": int, "files": (dict, type(None)),
}  # fmt: skip
#: The fix every damaged-SAE message ends with.
RETRAIN = (
    "train the SAE again (python -m interp.sae ... --overwrite), or restore the folder from a copy"
)


class SAEMismatchError(ValueError):
    """An SAE applied to a model or hook it was not trained on."""


class SAEFormatError(ValueError):
    """A saved SAE folder that is damaged or inconsistent (the message names the file)."""


@dataclass
class SAEManifest:
    """What made an SAE (``manifest.json`` beside SAELens' files)."""

    model_name: str
    model_fingerprint: str
    hook: str
    d_model: int
    d_sae: int
    architecture: str
    data_hash: str
    datasets: list[str]
    n_train_transcripts: int
    n_train_tokens_unique: int
    config: dict[str, Any]
    quality: dict[str, Any] = field(default_factory=dict)
    train_seconds: float | None = None
    activation_cache: str | None = None
    format_version: int = FORMAT_VERSION
    # size and checksum of cfg.json and the weights (None: saved before they were recorded)
    files: dict[str, Any] | None = None

    @classmethod
    def read(cls, folder: Path) -> SAEManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} has no {MANIFEST}: not an SAE saved by interp.sae "
                "(SAELens' own folders load with sae_lens.SAE.load_from_disk)"
            )
        raw = read_json(path, error=SAEFormatError, fix=RETRAIN)
        if not isinstance(raw, dict):
            raise SAEFormatError(f"{path}: not a JSON object; {RETRAIN}")
        raw = {k: v for k, v in raw.items() if k != SEAL_KEY}  # checked by verify_checksums
        names = {f.name for f in fields(cls)}
        required = {
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        }
        unknown, missing = sorted(set(raw) - names), sorted(required - set(raw))
        if unknown or missing:
            raise SAEFormatError(
                f"{path}: not an interp.sae manifest (missing: {', '.join(missing) or 'none'}; "
                f"unknown: {', '.join(unknown) or 'none'}); {RETRAIN}"
            )
        for key, value in raw.items():
            kind = _FIELD_TYPES[key]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
                raise SAEFormatError(f"{path}: {key} is {value!r}, not of type {kind}; {RETRAIN}")
        return cls(**raw)

    def write(self, folder: Path) -> None:
        """Write ``manifest.json`` into ``folder`` (which already holds SAELens' files),
        recording their sizes and checksums and sealing its own contents."""
        folder = Path(folder)
        files = record_checksums(folder, [n for n in (CFG, WEIGHTS) if (folder / n).is_file()])
        write_json_atomic(folder / MANIFEST, seal({**self.__dict__, "files": files}))


def verify_checksums(folder: Path, manifest: SAEManifest) -> None:
    """Raise :class:`SAEFormatError` naming the file unless ``manifest.json`` matches the
    checksum of its contents and ``cfg.json`` and the weights their recorded sizes and
    checksums; an SAE saved before they were recorded loads with a warning."""
    if manifest.files is None:
        warn_unchecked(folder, "train it again (--overwrite) to record them")
        return
    raw = read_json(folder / MANIFEST, error=SAEFormatError, fix=RETRAIN)
    if not check_seal(raw, where=folder / MANIFEST, fix=RETRAIN, error=SAEFormatError):
        raise SAEFormatError(f"{folder / MANIFEST}: records files but no {SEAL_KEY!r}; {RETRAIN}")
    check_checksums(
        folder,
        manifest.files,
        manifest=MANIFEST,
        fix=RETRAIN,
        error=SAEFormatError,
        required=(CFG, WEIGHTS),
    )


def sae_dir(name_or_path: str | Path, root: Path | None = None) -> Path:
    """A folder path as given, else ``<cache>/saes/<name>``."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    candidate = (root or cache_root()) / "saes" / str(name_or_path)
    if candidate.is_dir():
        return candidate
    saes = (root or cache_root()) / "saes"
    known = sorted(p.name for p in saes.iterdir() if p.is_dir()) if saes.is_dir() else []
    raise FileNotFoundError(
        f"no SAE {str(name_or_path)!r}: not a folder and not in {saes} "
        f"(saved there: {', '.join(known) or 'none'}); train one with python -m interp.sae"
    )


def check_sae(
    manifest: SAEManifest,
    model: LoadedModel,
    hook: str | None = None,
    *,
    allow_other_model: bool = False,
    where: str = "the SAE",
) -> None:
    """Raise :class:`SAEMismatchError` if ``manifest`` is for another model or hook."""
    if hook is not None and hook != manifest.hook:
        raise SAEMismatchError(
            f"{where} was trained on hook {manifest.hook!r}, not {hook!r}: its features "
            "mean nothing at another hook; train an SAE for that hook"
        )
    if model.fingerprint != manifest.model_fingerprint and not allow_other_model:
        raise SAEMismatchError(
            f"{where} was trained on model {manifest.model_name!r} (fingerprint "
            f"{manifest.model_fingerprint}), not on {model.name!r} (fingerprint "
            f"{model.fingerprint}); train one for this model, or pass allow_other_model=True "
            "to apply it anyway (e.g. a base model's SAE on a fine-tuned variant)"
        )
    if model.d_model != manifest.d_model:
        raise SAEMismatchError(
            f"{where} reads d_model={manifest.d_model} vectors; {model.name!r} has "
            f"d_model={model.d_model}"
        )


def _check_cfg(folder: Path, manifest: SAEManifest) -> dict[str, Any]:
    """SAELens' ``cfg.json``, checked against the manifest."""
    path = folder / CFG
    if not path.is_file():
        raise SAEFormatError(f"{path}: missing (SAELens' config of the SAE); {RETRAIN}")
    cfg = read_json(path, error=SAEFormatError, fix=RETRAIN)
    if not isinstance(cfg, dict):
        raise SAEFormatError(f"{path}: not a JSON object; {RETRAIN}")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    checks = [
        ("d_in", cfg.get("d_in"), manifest.d_model),
        ("d_sae", cfg.get("d_sae"), manifest.d_sae),
        (
            "metadata.training_architecture",
            meta.get("training_architecture", cfg.get("architecture")),
            manifest.architecture,
        ),
    ]
    if meta.get("hook_name") is not None:
        checks.append(("metadata.hook_name", meta.get("hook_name"), manifest.hook))
    for key, found, wanted in checks:
        if found != wanted:
            raise SAEFormatError(
                f"{path}: {key} is {found!r} but {MANIFEST} says {wanted!r}; the folder was "
                f"edited or mixes two SAEs; {RETRAIN}"
            )
    return cfg


def _check_weights(folder: Path, manifest: SAEManifest, dtype: str) -> None:
    """The weights file parses and holds W_enc, W_dec, b_enc, b_dec of the manifest's shapes;
    every tensor (an architecture's own, such as JumpReLU's threshold, too) is in the config's
    dtype and finite."""
    import torch
    from safetensors import safe_open

    path = folder / WEIGHTS
    if not path.is_file():
        raise SAEFormatError(f"{path}: missing; {RETRAIN}")
    d_in, d_sae = manifest.d_model, manifest.d_sae
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    try:
        with safe_open(path, framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise SAEFormatError(
            f"{path}: not a readable safetensors file ({type(err).__name__}: {err}); "
            f"truncated or replaced; {RETRAIN}"
        ) from None
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise SAEFormatError(
            f"{path}: no {', '.join(missing)} (holds {sorted(tensors)}); {RETRAIN}"
        )
    for key, tensor in tensors.items():
        wanted = shapes.get(key)
        if wanted is not None and tuple(tensor.shape) != wanted:
            raise SAEFormatError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, expected {wanted} "
                f"(d_in {d_in}, d_sae {d_sae} in {MANIFEST}); {RETRAIN}"
            )
        if str(tensor.dtype).removeprefix("torch.") != dtype:
            raise SAEFormatError(
                f"{path}: {key} is {tensor.dtype}, but {CFG} says {dtype}; {RETRAIN}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise SAEFormatError(f"{path}: {key} holds NaN or infinite values; {RETRAIN}")


def check_sae_files(folder: Path, manifest: SAEManifest) -> None:
    """Raise :class:`SAEFormatError` naming the file unless ``cfg.json`` agrees with the
    manifest and the weights have its shapes, the config's dtype and finite values."""
    cfg = _check_cfg(folder, manifest)
    _check_weights(folder, manifest, str(cfg.get("dtype", "float32")))


@dataclass
class LoadedSAE:
    """A SAELens SAE, its manifest and folder."""

    sae: Any  # sae_lens.SAE
    manifest: SAEManifest
    path: Path

    @property
    def hook(self) -> str:
        return self.manifest.hook

    def summary(self) -> str:
        """Quality on held-out replies: what ``python -m interp.sae`` prints."""
        m = self.manifest
        q = m.quality
        h, loss = q["heldout"], q["loss"]
        return "\n".join(
            [
                f"SAE {self.path} ({m.architecture}, d_sae {m.d_sae}) on {m.model_name} {m.hook}",
                f"trained on {m.n_train_tokens_unique} reply tokens of {m.n_train_transcripts} "
                f"transcripts in {m.train_seconds:.0f} s",
                f"held-out ({h['n_tokens']} tokens): explained variance "
                f"{h['explained_variance']:.3f}, L0 {h['l0']:.1f}, dead {h['dead_fraction']:.1%}",
                f"next-token loss on held-out replies: clean {loss['clean_loss']:.3f}, with SAE "
                f"{loss['sae_loss']:.3f} (+{loss['loss_increase']:.3f}), mean-ablated "
                f"{loss['mean_ablation_loss']:.3f}; loss recovered {loss['loss_recovered']:.1%}",
            ]
        )


def load_sae(
    name_or_path: str | Path,
    model: LoadedModel | None = None,
    *,
    hook: str | None = None,
    allow_other_model: bool = False,
    device: str | None = None,
) -> LoadedSAE:
    """Load an SAE saved by :func:`interp.sae.train_sae` (a name under ``<cache>/saes/`` or a
    folder). With ``model`` it refuses an SAE of another model fingerprint (unless
    ``allow_other_model``); with ``hook``, one trained at another hook."""
    from sae_lens import SAE

    folder = sae_dir(name_or_path)
    manifest = SAEManifest.read(folder)
    if model is not None:
        check_sae(manifest, model, hook, allow_other_model=allow_other_model, where=str(folder))
    elif hook is not None and hook != manifest.hook:
        raise SAEMismatchError(f"{folder} was trained on hook {manifest.hook!r}, not {hook!r}")
    check_sae_files(folder, manifest)
    verify_checksums(folder, manifest)
    dev = device or (str(model.device) if model is not None else "cpu")
    sae = SAE.load_from_disk(folder, device=dev)
    sae.eval()
    return LoadedSAE(sae=sae, manifest=manifest, path=folder)
