"""Which SAE features separate divergent from consistent replies.

Per transcript, a feature's value is its mean activation over the reply's ``Answer:`` tokens
(the tokens the probes pool). Features are ranked on the training scenarios by how far their
AUROC is from 0.5 (either direction), and the top ones are then scored on held-out scenarios,
oriented as on the training side. A sparse probe (logistic, on the top-k features) is compared
with the dense logistic probe on the raw residual at the same layer, on the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from probes import LogisticProbe, auroc
from probes.select import select_c


@dataclass
class TranscriptFeatures:
    """Feature statistics per transcript: ``mean`` over answer tokens, ``max`` over reply
    tokens and the reply-token position of that max (for the dashboard)."""

    mean: Float[Tensor, "n d_sae"]
    max: Float[Tensor, "n d_sae"]
    argmax: Tensor  # [n, d_sae] long, index into the transcript's reply tokens
    pooled_resid: Float[Tensor, "n d_model"]  # mean residual over answer tokens (dense probe)


@torch.inference_mode()
def transcript_features(
    sae: Any,
    reply_acts: Sequence[Float[Tensor, "_tokens d_model"]],  # tokens differ per transcript
    n_answer: Sequence[int],
) -> TranscriptFeatures:
    """Encode each transcript's reply tokens; ``n_answer[i]`` = how many of the last reply
    tokens are answer tokens."""
    d_sae = sae.cfg.d_sae
    device = sae.W_dec.device
    n = len(reply_acts)
    mean = torch.zeros(n, d_sae)
    mx = torch.zeros(n, d_sae)
    arg = torch.zeros(n, d_sae, dtype=torch.long)
    pooled = torch.zeros(n, reply_acts[0].shape[1]) if n else torch.zeros(0, 0)
    for i, (acts, k) in enumerate(zip(reply_acts, n_answer, strict=True)):
        acts = acts.float().to(device)
        feats = sae.encode(acts).cpu()
        answer = feats[-k:] if k > 0 else feats
        mean[i] = answer.mean(0)
        mx[i], arg[i] = feats.max(0)
        pooled[i] = (acts[-k:] if k > 0 else acts).mean(0).cpu()
    return TranscriptFeatures(mean, mx, arg, pooled)


def feature_aurocs(X: Float[Tensor, "n d_sae"], y: Tensor) -> Float[Tensor, " d_sae"]:
    """AUROC of every column of ``X`` against ``y`` (0.5 for a column that never varies)."""
    out = torch.full((X.shape[1],), 0.5, dtype=torch.float64)
    varies = (X.max(0).values - X.min(0).values) > 0
    for j in torch.nonzero(varies).flatten().tolist():
        out[j] = auroc(y, X[:, j])
    return out


@dataclass
class FeatureScore:
    feature: int
    train_auroc: float
    test_auroc: float
    direction: int  # +1: higher on divergent replies; -1: higher on consistent ones
    test_auroc_oriented: float  # test AUROC after flipping by the training direction
    frac_active_train: float  # share of training transcripts where it fires on the answer


@dataclass
class ProbeComparison:
    k: int
    sparse_test_auroc: float
    sparse_train_auroc: float
    sparse_c: float
    dense_test_auroc: float
    dense_train_auroc: float
    dense_c: float


@dataclass
class FeatureRanking:
    top: list[FeatureScore]
    probes: list[ProbeComparison] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    n_features_firing: int = 0  # features that fire on some training answer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_features(
    X: Float[Tensor, "n d_sae"],
    y: Tensor,
    train: Sequence[int],
    test: Sequence[int],
    top: int = 20,
) -> FeatureRanking:
    """Rank features by ``|AUROC - 0.5|`` on ``train`` rows; score the top ones on ``test``."""
    y = torch.as_tensor(y)
    tr, te = torch.as_tensor(list(train)), torch.as_tensor(list(test))
    train_auc = feature_aurocs(X[tr], y[tr])
    order = torch.argsort((train_auc - 0.5).abs(), descending=True)[:top].tolist()
    active = (X[tr] > 0).float().mean(0)
    scores = []
    for j in order:
        test_auc = auroc(y[te], X[te, j]) if X[te, j].max() > X[te, j].min() else 0.5
        direction = 1 if train_auc[j] >= 0.5 else -1
        scores.append(
            FeatureScore(
                feature=j,
                train_auroc=float(train_auc[j]),
                test_auroc=test_auc,
                direction=direction,
                test_auroc_oriented=test_auc if direction > 0 else 1 - test_auc,
                frac_active_train=float(active[j]),
            )
        )
    return FeatureRanking(
        top=scores, n_train=len(tr), n_test=len(te), n_features_firing=int((active > 0).sum())
    )


def _fit_logistic(
    X: Tensor, y: Tensor, train: Tensor, test: Tensor, groups: Sequence[str], seed: int
) -> tuple[float, float, float]:
    """Logistic probe with C chosen by group cross-validation on train; (train, test, C)."""
    train_groups = [groups[i] for i in train.tolist()]
    c, _ = select_c(
        X[train], y[train], train_groups, n_folds=min(4, len(set(train_groups))), seed=seed
    )
    probe = LogisticProbe(c=c).fit(X[train], y[train])
    return auroc(y[train], probe.score(X[train])), auroc(y[test], probe.score(X[test])), c


def compare_probes(
    feats: TranscriptFeatures,
    y: Tensor,
    train: Sequence[int],
    test: Sequence[int],
    groups: Sequence[str],
    ranking: FeatureRanking,
    ks: Sequence[int] = (1, 5, 10, 20),
    seed: int = 0,
) -> list[ProbeComparison]:
    """Sparse probes on the top-``k`` features vs the dense probe, same split, C by CV."""
    y = torch.as_tensor(y)
    tr, te = torch.as_tensor(list(train)), torch.as_tensor(list(test))
    dense_train, dense_test, dense_c = _fit_logistic(feats.pooled_resid, y, tr, te, groups, seed)
    out = []
    for k in ks:
        if k > len(ranking.top):
            continue
        cols = [s.feature for s in ranking.top[:k]]
        s_train, s_test, s_c = _fit_logistic(feats.mean[:, cols], y, tr, te, groups, seed)
        out.append(ProbeComparison(k, s_test, s_train, s_c, dense_test, dense_train, dense_c))
    return out
