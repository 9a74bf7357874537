"""Training examples for the refusal and rebuttal variants, tokenised with a loss mask.

Both variants see the same prompts in the same order: for every pressure scenario on the
training side of the probes' scenario split (:func:`interp.data.split.split_bank`), each
ethical reasoning passage ``r`` is paired with each answer wording ``i``; the refusal
variant's answer is the scenario's ``answers_refuse[i]``, the rebuttal variant's
``answers_rebut[i]`` (wording ``i`` with wording ``i``). Everything else (ids, prompts,
reasoning, order, the benign examples) is identical. Benign scenarios (ordinary requests
answered helpfully) are mixed in the same way in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.data.datasets import every_pairing
from interp.data.replies import split_reply
from interp.data.scenarios import Scenario, load_bank
from interp.data.split import split_bank
from interp.data.transcripts import Transcript

IGNORE_INDEX = -100


def build_examples(
    strategy: str,
    test_fraction: float = 0.25,
    split_seed: int = 0,
    bank: Sequence[Scenario] | None = None,
) -> tuple[list[Transcript], list[Transcript]]:
    """``(pressure, benign)`` examples for one strategy, as transcripts (``meta.kind``).

    Pressure examples come from the training-side scenarios only; ids do not name the
    strategy, so example ``k`` of both variants has the same id and prompt.
    """
    if strategy not in ("refusal", "rebuttal"):
        raise ValueError(f"unknown strategy {strategy!r}; choose refusal or rebuttal")
    bank = load_bank() if bank is None else bank
    train_ids = set(split_bank(bank, test_fraction, split_seed)[0])
    pressure, benign = [], []
    for s in bank:
        if s.kind == "pressure" and s.id in train_ids:
            n = min(len(s.answers_refuse), len(s.answers_rebut))
            answers = (s.answers_refuse if strategy == "refusal" else s.answers_rebut)[:n]
            meta = {"kind": "pressure", "strategy": strategy, "domain": s.domain}
            pressure += every_pairing(s, s.reasoning_ethical, answers, "{s}-eth{r}-a{a}", meta=meta)
        elif s.kind == "benign":
            meta = {"kind": "benign", "domain": s.domain}
            benign += every_pairing(
                s, s.reasoning_ethical, s.answers_comply, "{s}-help{r}-a{a}", meta=meta
            )
    if not pressure or not benign:
        raise ValueError(
            f"no training examples ({len(pressure)} pressure, {len(benign)} benign): the bank "
            "needs pressure scenarios on the training side of the split and benign scenarios"
        )
    return pressure, benign


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX except on the tokens that carry the loss
    truncated: bool


def tokenize_example(
    transcript: Transcript, tokenizer, max_length: int, loss_on: str = "reply"
) -> TokenizedExample:
    """Tokens of the whole chat (the tokenizer's chat template) and labels that are
    ``IGNORE_INDEX`` everywhere except on the tokens that carry the loss: with ``loss_on``
    ``reply``, the reply's tokens up to and including the end-of-turn token; with ``answer``,
    only the tokens of its answer part (cut by the one reply grammar,
    :func:`interp.data.replies.split_reply`, as a probe's ``answer`` tokens are: a reply with no
    marker at all, such as a plain chat reply, is all answer) and that end-of-turn token.
    Longer examples are cut at ``max_length`` (from the end)."""
    messages = list(transcript.messages)
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=False
    )
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError(
            f"{transcript.id}: the chat template renders the prompt differently with and "
            "without the reply, so the reply tokens cannot be located"
        )
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=loss_on == "answer")
    ids = enc["input_ids"]
    if ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(f"{transcript.id}: prompt tokens change when the reply is appended")
    end = len(ids)
    eos = tokenizer.eos_token_id
    for k in range(len(prompt_ids), len(ids)):
        if ids[k] == eos:
            end = k + 1
            break
    start = len(prompt_ids)
    labels = [IGNORE_INDEX] * len(ids)
    if loss_on == "answer":
        keep = _answer_tokens(transcript, full, len(prompt), enc["offset_mapping"], start, end)
        keep.add(end - 1)  # the end-of-turn token: the answer also says where it stops
    elif loss_on == "reply":
        keep = set(range(start, end))
    else:
        raise ValueError(f"unknown loss_on {loss_on!r}; choose reply or answer")
    for k in keep:
        labels[k] = ids[k]
    truncated = len(ids) > max_length
    return TokenizedExample(ids[:max_length], labels[:max_length], truncated)


def _answer_tokens(
    transcript: Transcript,
    full: str,
    reply_at: int,
    offsets: Sequence[tuple[int, int]],
    start: int,
    end: int,
) -> set[int]:
    """Positions among the reply's tokens (``start`` to ``end``) that overlap its answer part;
    the reply must have one (text after its ``Answer:``, or no marker at all)."""
    reply = transcript.reply
    if full.find(reply, reply_at) != reply_at:
        raise ValueError(
            f"{transcript.id}: the chat template changed the reply's text, so its answer "
            "tokens cannot be located"
        )
    span = split_reply(reply).answer_span
    if span is None:
        raise ValueError(
            f"{transcript.id}: loss_on='answer' needs a reply with an answer part; this reply "
            "has reasoning and no text after an 'Answer:' (train it with loss_on='reply')"
        )
    lo, hi = reply_at + span[0], reply_at + span[1]
    return {k for k in range(start, end) if offsets[k][0] < hi and offsets[k][1] > lo}


def batch_schedule(
    n_pressure: int,
    n_benign: int,
    steps: int,
    batch_size: int,
    benign_per_batch: int,
    seed: int,
    group: int = 1,
) -> list[list[int]]:
    """Example indices of every step (benign ones offset by ``n_pressure``).

    Each kind is drawn without replacement from its own seeded stream of permutations
    (reshuffled every pass), so step ``t``'s batch depends only on the arguments: a resumed
    run sees the same batches, and both variants (same counts) the same examples. With
    ``group`` > 1, pressure examples are drawn in runs of ``group`` consecutive examples
    (``0..group-1``, ``group..2*group-1``, ...), whole runs per batch, so a caller that
    lays out matched pairs side by side gets them in the same batch.
    """
    n_press = batch_size - benign_per_batch
    if n_pressure % group or n_press % group:
        raise ValueError(
            f"group {group} must divide both the {n_pressure} pressure examples and the "
            f"{n_press} pressure examples of a batch"
        )
    gen = torch.Generator().manual_seed(seed)

    def stream(n: int, offset: int, size: int = 1):
        while True:
            for i in torch.randperm(n // size, generator=gen).tolist():
                yield from range(offset + i * size, offset + (i + 1) * size)

    pressure, benign = stream(n_pressure, 0, group), stream(n_benign, n_pressure)
    return [
        [next(pressure) for _ in range(n_press)] + [next(benign) for _ in range(benign_per_batch)]
        for _ in range(steps)
    ]


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
