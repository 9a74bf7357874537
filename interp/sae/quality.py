"""How good an SAE is: reconstruction, sparsity, dead features, and the loss it costs.

- **explained variance**: ``1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2`` over held-out tokens;
- **L0**: mean number of active features per token;
- **dead fraction**: share of features that never fire on those tokens;
- **loss increase**: next-token cross-entropy on reply tokens when the reconstruction replaces
  the residual at the SAE's hook (at reply positions), minus the clean loss; beside it the
  same with the residual replaced by its mean, and the share of that gap the SAE recovers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import pad_batch
from interp.data.tokens import encode_transcript
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.sae.edits import HookFn, replace_hook, splice_hook


@dataclass
class ReconstructionStats:
    explained_variance: float
    mse: float
    l0: float
    dead_fraction: float
    n_tokens: int


@torch.inference_mode()
def reconstruction_stats(
    sae: Any, batches: Iterable[Float[Tensor, "n d_model"]]
) -> ReconstructionStats:
    """Explained variance, MSE, L0 and dead fraction of ``sae`` over the given token batches."""
    d_sae = sae.cfg.d_sae
    fired = torch.zeros(d_sae, dtype=torch.bool)
    n = 0
    sq_err = l0 = 0.0
    total = total_sq = None
    for x in batches:
        x = x.float().to(sae.W_dec.device)
        feats = sae.encode(x)
        err = x - sae.decode(feats)
        sq_err += float(err.pow(2).sum())
        l0 += float((feats > 0).sum())
        fired |= (feats > 0).any(0).cpu()
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq = x.pow(2).sum() if total_sq is None else total_sq + x.pow(2).sum()
        n += len(x)
    if n == 0 or total is None or total_sq is None:
        raise ValueError("no tokens to measure the SAE on")
    variance = float(total_sq) - float(total.pow(2).sum()) / n  # sum |x - mean|^2
    return ReconstructionStats(
        explained_variance=1.0 - sq_err / variance,
        mse=sq_err / (n * x.shape[1]),
        l0=l0 / n,
        dead_fraction=float((~fired).float().mean()),
        n_tokens=n,
    )


@dataclass
class LossStats:
    clean_loss: float
    sae_loss: float
    mean_ablation_loss: float
    loss_increase: float
    loss_recovered: float  # (ablation - sae) / (ablation - clean); 1 = perfect
    n_tokens: int
    n_transcripts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch(
    model: LoadedModel, transcripts: Sequence[Transcript], max_tokens: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Left-padded ids, attention mask, and the reply-position mask."""
    encoded = [encode_transcript(model.tokenizer, t, "reply", max_tokens) for t in transcripts]
    ids, attention, reply = pad_batch(encoded, model.tokenizer.pad_token_id, model.device)
    return ids, attention, reply.bool()


def reply_loss(
    model: LoadedModel,
    transcripts: Sequence[Transcript],
    hooks: Sequence[tuple[str, HookFn]] | None = None,
    *,
    hook_factory: Any = None,
    batch_size: int = 8,
    max_tokens: int = 1024,
) -> tuple[float, int]:
    """Mean next-token cross-entropy over reply tokens (each predicted from a reply position),
    with ``hook_factory(reply_mask) -> [(hook, fn)]`` applied in the pass."""
    total, count = 0.0, 0
    for start in range(0, len(transcripts), batch_size):
        ids, attention, reply = _batch(model, transcripts[start : start + batch_size], max_tokens)
        fwd = list(hooks or []) + (list(hook_factory(reply)) if hook_factory else [])
        with torch.inference_mode():
            logits = model.bridge.run_with_hooks(ids, attention_mask=attention, fwd_hooks=fwd)
        # position p predicts token p+1; score p where both p and p+1 are reply tokens
        scored = (reply[:, :-1] & reply[:, 1:]).to(logits.device)  # split model: last device
        logp = logits[:, :-1].float().log_softmax(-1)
        nll = -logp.gather(-1, ids[:, 1:, None].to(logp.device)).squeeze(-1)
        total += float(nll[scored].sum())
        count += int(scored.sum())
    if count == 0:
        raise ValueError("no reply tokens to score")
    return total / count, count


def loss_increase(
    model: LoadedModel,
    sae: Any,
    hook: str,
    transcripts: Sequence[Transcript],
    mean_act: Float[Tensor, " d_model"],
    *,
    batch_size: int = 8,
    max_tokens: int = 1024,
) -> LossStats:
    """Clean, SAE-spliced and mean-ablated reply loss on ``transcripts``."""
    if not transcripts:
        raise ValueError("no transcripts to measure the loss increase on")
    kwargs: dict[str, Any] = dict(batch_size=batch_size, max_tokens=max_tokens)
    clean, n = reply_loss(model, transcripts, **kwargs)
    spliced, _ = reply_loss(
        model, transcripts, hook_factory=lambda m: [(hook, splice_hook(sae, m))], **kwargs
    )
    ablated, _ = reply_loss(
        model, transcripts, hook_factory=lambda m: [(hook, replace_hook(mean_act, m))], **kwargs
    )
    gap = ablated - clean
    return LossStats(
        clean_loss=clean,
        sae_loss=spliced,
        mean_ablation_loss=ablated,
        loss_increase=spliced - clean,
        loss_recovered=(ablated - spliced) / gap if gap > 0 else float("nan"),
        n_tokens=n,
        n_transcripts=len(transcripts),
    )
