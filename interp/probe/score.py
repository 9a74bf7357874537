"""Scoring new transcripts with a saved probe, in one call.

The probe records the model, hook and token selection it was trained on; this caches exactly
those activations of ``transcripts`` (pooled as in training) and scores them through
:meth:`probes.Probe.score_set`, which refuses activations of another model, hook or token
selection. For per-token scores see :mod:`interp.probe.token_scores`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jaxtyping import Float
from torch import Tensor

from interp.cache import cache_activations
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.probe.results import check_model_dtype
from probes import Probe, ProbeMismatchError


def score_transcripts(
    model: LoadedModel,
    probe: Probe,
    transcripts: Sequence[Transcript],
    *,
    batch_size: int = 16,
    max_tokens: int = 1024,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Float[Tensor, " n"]:
    """The probe's score of each transcript (higher = divergent), in transcript order."""
    hook, tokens = probe.meta.hook, probe.meta.tokens
    if hook is None or tokens is None:
        raise ProbeMismatchError(
            "the probe does not record its hook and token selection (ProbeMeta.hook/tokens); "
            "score activations yourself with probe.score(...)"
        )
    # refuse another model before the forward passes, as score_set would after them
    probe.check_compatible(model_fingerprint=model.fingerprint, hook=hook, tokens=tokens)
    check_model_dtype(probe, model.dtype_name)
    acts = cache_activations(
        model,
        transcripts,
        [hook],
        tokens,  # type: ignore[arg-type]
        batch_size=batch_size,
        max_tokens=max_tokens,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        progress=progress,
    )
    return probe.score_set(acts).cpu()
