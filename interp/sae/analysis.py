"""The feature analysis of a trained SAE, on the data it was trained with.

It reads the SAE's own activation cache again (same datasets, same hook, so no forward
pass), takes the labelled transcripts of its first dataset, splits them by scenario exactly
as the probe pipeline does (the SAE never trained on the test scenarios), ranks features on
the training scenarios, scores them and the sparse/dense probes on the test scenarios.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.data.tokens import encode_transcript
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.paths import cache_root
from interp.sae.config import SAEConfig
from interp.sae.dashboard import TokenContext, top_contexts, write_dashboard
from interp.sae.features import (
    FeatureRanking,
    TranscriptFeatures,
    compare_probes,
    rank_features,
    transcript_features,
)
from interp.sae.store import LoadedSAE, check_sae
from interp.sae.train import SAEData, prepare_data


@dataclass
class FeatureAnalysis:
    ranking: FeatureRanking
    contexts: dict[int, list[TokenContext]]
    transcripts: list[Transcript]  # the labelled transcripts, in row order of ``feats``
    train: list[int]  # rows of ``transcripts``
    test: list[int]
    feats: TranscriptFeatures
    reply_acts: list[Tensor]
    n_answer: list[int]  # answer tokens at the end of each reply
    data: SAEData

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.ranking.to_dict(),
            "train_groups": sorted({self.transcripts[i].group for i in self.train}),
            "test_groups": sorted({self.transcripts[i].group for i in self.test}),
            "contexts": {str(f): [asdict(c) for c in cs] for f, cs in self.contexts.items()},
        }

    def answer_acts(self, rows: Sequence[int]) -> list[Tensor]:
        """Answer-token activations of the given rows (for probe-score changes)."""
        return [self.reply_acts[i][-self.n_answer[i] :] for i in rows]


def analyse_features(
    model: LoadedModel,
    loaded: LoadedSAE,
    *,
    top: int = 20,
    ks: Sequence[int] = (1, 5, 10, 20),
    root: Path | None = None,
    progress: bool = False,
) -> FeatureAnalysis:
    """Rank ``loaded``'s features on divergent vs consistent answers (see module doc)."""
    check_sae(loaded.manifest, model, loaded.hook, where=str(loaded.path))
    config = SAEConfig(**{**loaded.manifest.config, "progress": progress})
    root = root or (Path(config.cache_dir) if config.cache_dir else cache_root())
    data = prepare_data(config, model, root)
    rows = data.labelled
    transcripts = [data.transcripts[i] for i in rows]
    if any(t.label is None for t in transcripts):
        raise ValueError(f"{config.datasets[0]} has unlabelled transcripts; ranking needs labels")
    reply_all = data.acts.per_token(data.hook)
    reply_acts = [reply_all[i] for i in rows]
    n_answer = []
    for t, acts in zip(transcripts, reply_acts, strict=True):
        enc = encode_transcript(model.tokenizer, t, "answer", config.max_tokens)
        n_answer.append(len(enc.selected) if enc.answer_found else len(acts))
    feats = transcript_features(loaded.sae, reply_acts, n_answer)
    heldout = set(data.heldout_rows)
    train = [j for j, i in enumerate(rows) if i not in heldout]
    test = [j for j, i in enumerate(rows) if i in heldout]
    y = torch.tensor([t.label for t in transcripts])
    ranking = rank_features(feats.mean, y, train, test, top=top)
    ranking.probes = compare_probes(
        feats, y, train, test, [t.group for t in transcripts], ranking, ks, seed=config.seed
    )
    contexts = {
        s.feature: top_contexts(
            feats, s.feature, transcripts, model.tokenizer, max_tokens=config.max_tokens
        )
        for s in ranking.top
    }
    return FeatureAnalysis(
        ranking, contexts, transcripts, train, test, feats, reply_acts, n_answer, data
    )


def write_feature_dashboard(
    analysis: FeatureAnalysis, loaded: LoadedSAE, model: LoadedModel, folder: Path, n: int = 10
) -> Path:
    """The HTML dashboard of the top ``n`` ranked features."""
    sae = loaded.sae

    def reply_features(i: int) -> Tensor:
        with torch.inference_mode():
            return sae.encode(analysis.reply_acts[i].float().to(sae.W_dec.device)).cpu()

    return write_dashboard(
        folder,
        analysis.ranking.top[:n],
        analysis.feats,
        analysis.transcripts,
        reply_features,
        model.tokenizer,
        max_tokens=SAEConfig(**loaded.manifest.config).max_tokens,
        title=f"SAE features of {loaded.path.name} ({loaded.hook})",
    )
