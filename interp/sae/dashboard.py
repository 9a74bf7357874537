"""Top-activating tokens of SAE features: a JSON-able summary and an HTML dashboard.

For each feature, the transcripts where it fires hardest (max over reply tokens) are shown
with every reply token coloured by the feature's activation (reusing
:func:`interp.probe.token_scores.write_token_html`), one page per feature plus an index page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.artifacts import write_text_atomic
from interp.data.tokens import encode_transcript
from interp.data.transcripts import Transcript
from interp.probe.token_scores import TokenScores, write_token_html
from interp.sae.features import FeatureScore, TranscriptFeatures


@dataclass
class TokenContext:
    transcript: str
    token: str
    activation: float
    context: str  # a few tokens either side, the firing token in [brackets]


def reply_pieces(tokenizer: Any, transcript: Transcript, max_tokens: int) -> list[str]:
    enc = encode_transcript(tokenizer, transcript, "reply", max_tokens)
    return [tokenizer.decode([enc.input_ids[i]]) for i in enc.selected]


def top_contexts(
    feats: TranscriptFeatures,
    feature: int,
    transcripts: Sequence[Transcript],
    tokenizer: Any,
    *,
    n: int = 8,
    window: int = 6,
    max_tokens: int = 1024,
) -> list[TokenContext]:
    """The ``n`` transcripts where ``feature`` peaks, with the peak token in context."""
    peaks = feats.max[:, feature]
    out = []
    for i in torch.argsort(peaks, descending=True)[:n].tolist():
        if peaks[i] <= 0:
            break
        pieces = reply_pieces(tokenizer, transcripts[i], max_tokens)
        p = int(feats.argmax[i, feature])
        left = "".join(pieces[max(0, p - window) : p])
        right = "".join(pieces[p + 1 : p + 1 + window])
        out.append(
            TokenContext(
                transcripts[i].id,
                pieces[p],
                float(peaks[i]),
                f"{left}[{pieces[p]}]{right}".replace("\n", "\\n"),
            )
        )
    return out


def write_dashboard(
    folder: Path,
    scores: Sequence[FeatureScore],
    feats: TranscriptFeatures,
    transcripts: Sequence[Transcript],
    reply_features: Any,
    tokenizer: Any,
    *,
    n_examples: int = 6,
    max_tokens: int = 1024,
    title: str = "SAE features",
) -> Path:
    """Write ``index.html`` and ``feature-<f>.html`` pages under ``folder``; returns the index.

    ``reply_features(i) -> [tokens, d_sae]`` gives the feature activations of transcript
    ``i``'s reply tokens (recomputed only for the transcripts shown).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in scores:
        f = s.feature
        peaks = feats.max[:, f]
        items = []
        for i in torch.argsort(peaks, descending=True)[:n_examples].tolist():
            acts: Tensor = reply_features(i)[:, f]
            pieces = reply_pieces(tokenizer, transcripts[i], max_tokens)
            t = transcripts[i]
            caption = (
                f"peak {float(peaks[i]):.3f}; label {t.label} (1 = divergent); "
                f"reasoning {t.meta.get('reasoning')}, answer {t.meta.get('answer')}"
            )
            items.append((t, TokenScores(t.id, pieces, acts.tolist()), caption))
        page = folder / f"feature-{f}.html"
        write_token_html(
            page,
            items,
            f"Feature {f}: train AUROC {s.train_auroc:.3f}, held-out {s.test_auroc:.3f}",
        )
        contexts = top_contexts(feats, f, transcripts, tokenizer, n=3, max_tokens=max_tokens)
        ctx = "<br>".join(html.escape(c.context) for c in contexts)
        rows.append(
            f"<tr><td><a href='{page.name}'>{f}</a></td><td>{s.train_auroc:.3f}</td>"
            f"<td>{s.test_auroc:.3f}</td><td>{'divergent' if s.direction > 0 else 'consistent'}"
            f"</td><td>{s.frac_active_train:.2f}</td><td class='ctx'>{ctx}</td></tr>"
        )
    index = folder / "index.html"
    write_text_atomic(
        index,
        "\n".join(
            [
                "<!doctype html><meta charset='utf-8'>",
                f"<title>{html.escape(title)}</title>",
                "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
                "td,th{padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}"
                ".ctx{font-family:monospace;font-size:90%}</style>",
                f"<h1>{html.escape(title)}</h1>",
                "<p>Features ranked by |AUROC - 0.5| of their mean activation over answer "
                "tokens, divergent vs consistent, on the training scenarios; held-out AUROC "
                "on the probes' test scenarios. Contexts: peak token in [brackets].</p>",
                "<table><tr><th>feature</th><th>train AUROC</th><th>held-out AUROC</th>"
                "<th>higher on</th><th>fires on (train)</th><th>top contexts</th></tr>",
                *rows,
                "</table>",
            ]
        )
        + "\n",
    )
    return index
