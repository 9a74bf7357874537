"""One SAE applied to several models on the same transcripts: which features moved.

An SAE trained on the base model is applied on purpose to its fine-tuned variants
(``allow_other_model=True``); the hook must still match. Per model the mean activation of
each feature over the transcripts' answer tokens is computed; features are ranked by the
largest absolute change from the base model. (To train one SAE per model instead, call
:func:`interp.sae.train_sae` with each model's spec.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import cache_activations
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.sae.data import answer_tokens
from interp.sae.store import LoadedSAE, check_sae


@torch.inference_mode()
def mean_features(
    sae: Any, token_acts: Sequence[Float[Tensor, "_tokens d_model"]]
) -> Float[Tensor, " d_sae"]:
    """Mean activation of every feature over all given tokens (pooled over transcripts)."""
    total = torch.zeros(sae.cfg.d_sae)
    n = 0
    for acts in token_acts:
        if len(acts):
            total += sae.encode(acts.float().to(sae.W_dec.device)).sum(0).cpu()
            n += len(acts)
    if n == 0:
        raise ValueError("no tokens to encode")
    return total / n


@dataclass
class FeatureShift:
    feature: int
    base: float
    other: float
    change: float


@dataclass
class ModelComparison:
    base_model: str
    models: list[str]
    means: dict[str, list[float]] = field(repr=False)
    top: dict[str, list[FeatureShift]]
    explained_variance: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("means")
        return out


def compare_models(
    loaded: LoadedSAE,
    models: Sequence[LoadedModel],
    transcripts: Sequence[Transcript],
    *,
    top: int = 10,
    cache_dir: Path | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> ModelComparison:
    """Apply ``loaded`` to every model in ``models`` (the first one is the base) and rank
    features by ``|mean_other - mean_base|`` over answer tokens of ``transcripts``."""
    if len(models) < 2:
        raise ValueError("compare_models needs a base model and at least one other")
    sae = loaded.sae
    means: dict[str, Tensor] = {}
    ev: dict[str, float] = {}
    for m in models:
        check_sae(loaded.manifest, m, loaded.hook, allow_other_model=True, where=str(loaded.path))
        acts = cache_activations(
            m,
            transcripts,
            [loaded.hook],
            "reply",
            per_token=True,
            batch_size=batch_size,
            cache_dir=cache_dir,
            progress=progress,
        )
        answers = answer_tokens(acts, loaded.hook, transcripts, m.tokenizer)
        means[m.name] = mean_features(sae, answers)
        x = torch.cat(answers).float().to(sae.W_dec.device)
        with torch.inference_mode():
            err = (x - sae(x)).pow(2).sum()
        ev[m.name] = float(1 - err / (x - x.mean(0)).pow(2).sum())
    base = models[0].name
    shifts: dict[str, list[FeatureShift]] = {}
    for m in models[1:]:
        delta = means[m.name] - means[base]
        order = torch.argsort(delta.abs(), descending=True)[:top].tolist()
        shifts[m.name] = [
            FeatureShift(j, float(means[base][j]), float(means[m.name][j]), float(delta[j]))
            for j in order
        ]
    return ModelComparison(
        base_model=base,
        models=[m.name for m in models],
        means={k: v.tolist() for k, v in means.items()},
        top=shifts,
        explained_variance=ev,
    )
