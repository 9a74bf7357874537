"""Ablate or scale one SAE feature in a forward pass and measure what the answer does.

The measure is :class:`interp.patching.metrics.LogProbDiff`: ``log p(complying answer) -
log p(refusing answer)`` after the transcript's reasoning, teacher-forced, summed over the
answer's tokens. The edit (:func:`interp.sae.edits.feature_edit_hook`) is applied at the
SAE's hook on every position of the assistant's reply and of the continuation, so the
system prompt and the pressure turn are left as they were. The probe-score change is exact
from cached activations: the probe reads the hook that is edited.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.data.padding import pad_left
from interp.data.tokens import answer_start
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.patching.metrics import LogProbDiff, RunOutput
from interp.sae.edits import feature_delta, feature_edit_hook


@dataclass(frozen=True)
class AnswerPrompt:
    """A transcript cut after ``Answer:``, and the two answers to compare."""

    id: str
    prompt: str  # rendered chat text up to and including "Answer:"
    reply_start: int  # character offset where the assistant's reply begins
    comply: str
    refuse: str


def _answer(t: Transcript) -> str:
    at = answer_start(t.reply)
    return t.reply[at:].strip() if at is not None else t.reply.strip()


def answer_prompts(tokenizer: Any, transcripts: Sequence[Transcript]) -> list[AnswerPrompt]:
    """One prompt per (scenario, reasoning) with both a complying and a refusing answer.

    The prompt is the transcript up to ``Answer:`` (after its reasoning); the continuations
    are the scenario's complying and refusing answers that follow the same reasoning.
    """
    by_key: dict[tuple[str, str], dict[str, Transcript]] = {}
    for t in transcripts:
        at = answer_start(t.reply)
        stance = t.meta.get("answer")
        if at is None or stance not in ("comply", "refuse"):
            continue
        reasoning = t.reply[:at]
        by_key.setdefault((t.group, reasoning), {}).setdefault(stance, t)
    out = []
    for (_, reasoning), pair in sorted(by_key.items()):
        if set(pair) != {"comply", "refuse"}:
            continue
        t = pair["comply"]
        text = tokenizer.apply_chat_template(list(t.messages), tokenize=False)
        reply_at = text.rfind(t.reply)
        prompt = text[: reply_at + len(reasoning)].rstrip()
        out.append(
            AnswerPrompt(
                id=t.id,
                prompt=prompt,
                reply_start=reply_at,
                comply=" " + _answer(t),
                refuse=" " + _answer(pair["refuse"]),
            )
        )
    return out


def _logprob_diff(
    model: LoadedModel,
    prompt: AnswerPrompt,
    hook: str | None,
    make_fn: Any,
) -> float:
    """LogProbDiff of one prompt, with ``make_fn(mask)`` hooked at ``hook`` (if given)."""
    tok = model.tokenizer
    enc = tok(prompt.prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    first_reply = next(
        (i for i, (s, _) in enumerate(enc["offset_mapping"]) if s >= prompt.reply_start),
        len(ids) - 1,
    )
    metric = LogProbDiff.from_text(tok, prompt.comply, prompt.refuse)
    suffixes = metric.suffixes()
    k = max(len(s) for s in suffixes)
    rows = [ids + s.tolist() for s in suffixes]
    input_ids, attention = pad_left(rows, tok.pad_token_id)
    width = input_ids.shape[1]
    edit = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, row in enumerate(rows):
        edit[r, width - len(row) + first_reply :] = True
    fwd = [(hook, make_fn(edit.to(model.device)))] if hook is not None else []
    with torch.inference_mode():
        logits = model.bridge.run_with_hooks(
            input_ids.to(model.device), attention_mask=attention.to(model.device), fwd_hooks=fwd
        )
    picked = torch.zeros(1, len(rows), k, logits.shape[-1])
    for r, s in enumerate(suffixes):
        pad = width - len(rows[r])
        start = pad + len(ids) - 1  # position predicting the suffix's first token
        picked[0, r, : len(s)] = logits[r, start : start + len(s)].float().cpu()
    out = RunOutput(logits=picked, acts={})
    return float(metric(out, out)[0])


def clean_diffs(model: LoadedModel, prompts: Sequence[AnswerPrompt]) -> list[float]:
    """``log p(comply) - log p(refuse)`` of each prompt without any edit."""
    return [_logprob_diff(model, p, None, None) for p in prompts]


@dataclass
class InterventionResult:
    feature: int
    scale: float
    n_prompts: int
    clean_diff: float  # mean log p(comply) - log p(refuse), unedited
    edited_diff: float
    change: float  # mean of (edited - clean) per prompt
    change_sd: float
    per_prompt: list[float] = field(default_factory=list)
    probe_score_change: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def intervene(
    model: LoadedModel,
    sae: Any,
    hook: str,
    feature: int,
    scale: float,
    prompts: Sequence[AnswerPrompt],
    clean: Sequence[float] | None = None,
) -> InterventionResult:
    """Mean change of ``log p(comply) - log p(refuse)`` when ``feature`` is scaled by ``scale``
    (0 ablates it) at ``hook`` over each prompt's reply and continuation. ``clean`` reuses
    :func:`clean_diffs` of the same prompts."""
    if not prompts:
        raise ValueError("no prompts: answer_prompts found no scenario with both answers")
    if not 0 <= feature < sae.cfg.d_sae:
        raise ValueError(f"feature {feature} out of range: the SAE has {sae.cfg.d_sae}")
    clean = list(clean) if clean is not None else clean_diffs(model, prompts)
    if len(clean) != len(prompts):
        raise ValueError(f"{len(clean)} clean values for {len(prompts)} prompts")
    edited = []
    for p in prompts:
        edited.append(
            _logprob_diff(model, p, hook, lambda m: feature_edit_hook(sae, feature, scale, m))
        )
    changes = [e - c for e, c in zip(edited, clean, strict=True)]
    return InterventionResult(
        feature=feature,
        scale=scale,
        n_prompts=len(prompts),
        clean_diff=statistics.fmean(clean),
        edited_diff=statistics.fmean(edited),
        change=statistics.fmean(changes),
        change_sd=statistics.pstdev(changes),
        per_prompt=changes,
    )


@torch.inference_mode()
def probe_score_change(
    probe: Any,
    sae: Any,
    answer_acts: Sequence[Float[Tensor, "_tokens d_model"]],  # tokens differ per transcript
    feature: int,
    scale: float,
) -> float:
    """Mean change of a probe's score (on mean-pooled answer activations at the SAE's hook)
    when ``feature`` is scaled by ``scale`` on every answer token."""
    device = sae.W_dec.device
    clean = torch.stack([a.float().to(device).mean(0) for a in answer_acts])
    edited = torch.stack(
        [
            (a.float().to(device) + feature_delta(sae, a.float().to(device), feature, scale)).mean(
                0
            )
            for a in answer_acts
        ]
    )
    probe = probe.to(device) if hasattr(probe, "to") else probe
    return float((probe.score(edited) - probe.score(clean)).mean())
