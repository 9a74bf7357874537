"""What a patched run is measured by.

A metric maps the output of a batch of runs on one prompt to one number per run. The sweep
appends each of the metric's ``suffixes`` (continuation token sequences) to the prompt, so a
run is a group of rows, one per suffix, and computes logits only at the positions that
predict the suffix tokens (the last prompt position when there is no suffix).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.patching.segments import PatchError, PatchInput


@dataclass
class RunOutput:
    """Outputs of ``runs`` runs of one prompt, each with ``n_suffix`` rows.

    ``logits[r, s, j]`` predicts token ``j`` of suffix ``s`` (position ``prompt_len - 1 + j``);
    ``acts[hook]`` holds whatever the metric asked to capture at that hook.
    """

    logits: Float[Tensor, "runs n_suffix k d_vocab"] | None
    acts: dict[str, Tensor]


class Metric(ABC):
    """Base class: ``suffixes`` to append, hooks to read, and ``__call__`` -> one value per run.

    ``clean`` is the unpatched target's output (the same object as ``out`` when the clean
    target itself is measured), for metrics defined relative to it.
    """

    name: str = "metric"
    needs_logits: bool = True

    def suffixes(self) -> list[Int[Tensor, " _n"]]:  # lengths may differ
        return [torch.zeros(0, dtype=torch.long)]

    def capture(self, prompt: PatchInput) -> dict[str, tuple[int, ...]]:
        """Hook name -> positions of ``prompt`` whose mean activation to capture."""
        return {}

    @abstractmethod
    def __call__(self, out: RunOutput, clean: RunOutput) -> Float[Tensor, " runs"]: ...

    def describe(self) -> dict[str, Any]:
        """What identifies this metric's values (parts of a split sweep must agree on it)."""
        return {"name": self.name, "kind": type(self).__name__}


def _tokens(tokenizer: Any, text: str) -> Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PatchError(f"continuation {text!r} has no tokens")
    return torch.tensor(ids, dtype=torch.long)


class LogProbDiff(Metric):
    """``log p(complying continuation) - log p(refusing continuation)`` given the prompt.

    Each continuation's log-probability is summed over its tokens (teacher forcing), so
    multi-token continuations compare whole phrases, not first tokens.
    """

    name = "logprob_diff"

    def __init__(self, comply: Int[Tensor, " n"], refuse: Int[Tensor, " m"]) -> None:
        if len(comply) == 0 or len(refuse) == 0:
            raise PatchError("both continuations need at least one token")
        self.comply, self.refuse = comply.long(), refuse.long()

    @classmethod
    def from_text(cls, tokenizer: Any, comply: str, refuse: str) -> LogProbDiff:
        return cls(_tokens(tokenizer, comply), _tokens(tokenizer, refuse))

    def suffixes(self) -> list[Tensor]:
        return [self.comply, self.refuse]

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "comply": self.comply.tolist(),
            "refuse": self.refuse.tolist(),
        }

    def __call__(self, out: RunOutput, clean: RunOutput) -> Tensor:
        assert out.logits is not None
        logp = out.logits.float().log_softmax(-1)
        totals = []
        for s, suffix in enumerate((self.comply, self.refuse)):
            idx = suffix.to(logp.device)
            picked = logp[:, s, : len(idx)].gather(-1, idx.expand(len(logp), -1)[..., None])
            totals.append(picked.squeeze(-1).sum(-1))
        return totals[0] - totals[1]


class NextTokenKL(Metric):
    """KL divergence ``KL(p_clean_target || p_run)`` of the next-token distribution after the
    prompt: 0 for the unpatched target, growing as the patch moves the prediction."""

    name = "next_token_kl"

    def __call__(self, out: RunOutput, clean: RunOutput) -> Tensor:
        assert out.logits is not None and clean.logits is not None
        logp = out.logits[:, 0, 0].float().log_softmax(-1)
        ref = clean.logits[:1, 0, 0].float().log_softmax(-1)
        return (ref.exp() * (ref - logp)).sum(-1)


class ProbeScore(Metric):
    """A saved probe's decision score on the mean activation of a segment at ``hook``.

    ``segment=None`` reads the last prompt token. The probe is applied as it was trained (its
    own hook); patches after that layer cannot change it, and only the blocks up to the
    probe's layer run.
    """

    name = "probe_score"
    needs_logits = False

    def __init__(self, probe: Any, hook: str, segment: str | None = None) -> None:
        self.probe, self.hook, self.segment = probe, hook, segment

    def describe(self) -> dict[str, Any]:
        state = self.probe.state() if hasattr(self.probe, "state") else {}
        digest = hashlib.blake2b(digest_size=12)
        for key, value in sorted(state.items()):
            digest.update(key.encode())
            digest.update(value.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
        return super().describe() | {
            "hook": self.hook,
            "segment": self.segment,
            "probe": type(self.probe).__name__,
            "probe_weights": digest.hexdigest(),
            "threshold": float(getattr(self.probe, "threshold", 0.0)),
        }

    def capture(self, prompt: PatchInput) -> dict[str, tuple[int, ...]]:
        if self.segment is None:
            return {self.hook: (len(prompt) - 1,)}
        start, end = prompt.span(self.segment)
        return {self.hook: tuple(range(start, end))}

    def __call__(self, out: RunOutput, clean: RunOutput) -> Tensor:
        acts = out.acts[self.hook]
        probe = self.probe.to(acts.device) if hasattr(self.probe, "to") else self.probe
        return probe.score(acts.to(torch.float32))
