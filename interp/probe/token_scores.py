"""A saved probe read token by token, and an HTML page that colours replies by its score.

A linear probe scores pooled activations; applied to each token's activation it shows *where*
in a reply the score comes from. For the logistic probe the mean of the per-token logits is
the logit of the mean activation, so the colours add up to the transcript's score.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from interp.artifacts import write_text_atomic
from interp.cache import cache_activations
from interp.data.tokens import encode_transcript
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.probe.results import check_model_dtype
from probes import Probe


@dataclass
class TokenScores:
    """One transcript's selected tokens (as text) and the probe's score on each."""

    id: str
    tokens: list[str]
    scores: list[float]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


def score_tokens(
    model: LoadedModel,
    probe: Probe,
    transcripts: Sequence[Transcript],
    tokens: str | None = None,
    *,
    cache_dir: Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> list[TokenScores]:
    """Per-token probe scores of each transcript's selected tokens (default: the probe's own
    token selection). Refuses a probe trained on another model (fingerprint mismatch)."""
    probe.check_compatible(model_fingerprint=model.fingerprint)
    check_model_dtype(probe, model.dtype_name)
    hook = probe.meta.hook
    if hook is None:
        raise ValueError("the probe does not record its hook; save it with ProbeMeta(hook=...)")
    selection = tokens or probe.meta.tokens or "reply"
    acts = cache_activations(
        model,
        transcripts,
        [hook],
        selection,
        per_token=True,
        batch_size=batch_size,  # type: ignore[arg-type]
        cache_dir=cache_dir,
        progress=progress,
    )
    out = []
    for t, token_acts in zip(transcripts, acts.per_token(hook), strict=True):
        enc = encode_transcript(model.tokenizer, t, selection, acts.key.max_tokens)  # type: ignore[arg-type]
        pieces = [model.tokenizer.decode([enc.input_ids[i]]) for i in enc.selected]
        scores: Tensor = probe.score(token_acts.to(probe.direction.device)).cpu()
        out.append(TokenScores(t.id, pieces, scores.tolist()))
    return out


def _colour(score: float, scale: float) -> str:
    """Red for scores above 0 (towards label 1), blue below, white at 0."""
    x = max(-1.0, min(1.0, score / scale)) if scale > 0 else 0.0
    if x >= 0:
        return f"rgba(220, 50, 47, {x:.2f})"
    return f"rgba(38, 139, 210, {-x:.2f})"


def write_token_html(
    path: Path,
    items: Sequence[tuple[Transcript, TokenScores, str]],
    title: str,
) -> None:
    """An HTML page: per transcript a header (``caption``) and its reply, each token's
    background coloured by its probe score (hover shows the number)."""
    scale = max((abs(s) for _, ts, _ in items for s in ts.scores), default=1.0)
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        ".reply{white-space:pre-wrap;font-family:monospace;line-height:1.6;border:1px solid #ddd;"
        "padding:.6em}.ctx{color:#666;font-size:90%}</style>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Red: the probe's per-token score leans towards label 1 (divergent); blue: towards "
        f"0. Full colour = |score| {scale:.2f}. Hover a token for its score.</p>",
    ]
    for transcript, ts, caption in items:
        turn = transcript.messages[-2]["content"] if len(transcript.messages) > 1 else ""
        spans = "".join(
            f"<span style='background:{_colour(score, scale)}' title='{score:.3f}'>"
            f"{html.escape(tok)}</span>"
            for tok, score in zip(ts.tokens, ts.scores, strict=True)
        )
        parts += [
            f"<h3>{html.escape(transcript.id)}</h3><p>{html.escape(caption)}</p>",
            f"<p class='ctx'>Turn answered: {html.escape(turn[:400])}</p>",
            f"<div class='reply'>{spans}</div>",
        ]
    write_text_atomic(path, "\n".join(parts) + "\n")
