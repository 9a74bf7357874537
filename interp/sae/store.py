"""SAEs on disk: SAELens' own format plus our manifest, and a loader that checks both.

A saved SAE is a folder ``<cache>/saes/<name>/`` holding SAELens' ``cfg.json`` and
``sae_weights.safetensors`` (``sae_lens.SAE.load_from_disk(folder)`` reads it unaided) and
``manifest.json`` (model name and fingerprint, hook, data hash, our config, quality figures).
:func:`load_sae` refuses an SAE trained on another model or hook unless told otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.artifacts import write_json_atomic
from interp.models import LoadedModel
from interp.paths import cache_root

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class SAEMismatchError(ValueError):
    """An SAE applied to a model or hook it was not trained on."""


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

    @classmethod
    def read(cls, folder: Path) -> SAEManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} has no {MANIFEST}: not an SAE saved by interp.sae "
                "(SAELens' own folders load with sae_lens.SAE.load_from_disk)"
            )
        raw = json.loads(path.read_text())
        return cls(**raw)

    def write(self, folder: Path) -> None:
        write_json_atomic(Path(folder) / MANIFEST, self.__dict__)


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
    dev = device or (str(model.device) if model is not None else "cpu")
    sae = SAE.load_from_disk(folder, device=dev)
    sae.eval()
    return LoadedSAE(sae=sae, manifest=manifest, path=folder)
