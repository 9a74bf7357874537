"""Prompts with named token segments, and aligning positions of two prompts by segment.

Patching one prompt's activations into another needs a map from target positions to source
positions. When both prompts have the same tokens up to a substitution (same length) the map
is the identity. When they differ in length, for example a conversation whose assistant turn
is a short polite refusal and one whose assistant turn is a long rebuttal, positions are
matched inside named segments ("the follow-up turn"): the k-th token of a segment in the
target takes the k-th token of the same segment in the source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor


class PatchError(ValueError):
    """Two runs that cannot be patched into each other, or a bad patching request."""


#: Name of the segment holding the generation prompt (``<|im_start|>assistant\\n``).
GENERATION_PROMPT = "generation_prompt"


@dataclass(frozen=True)
class PatchInput:
    """One prompt as token ids, with named ``[start, end)`` token spans."""

    tokens: Int[Tensor, " pos"]
    segments: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    token_text: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tokens.ndim != 1 or len(self.tokens) == 0:
            raise PatchError(
                f"a patch input is one non-empty 1-D token sequence, got shape "
                f"{tuple(self.tokens.shape)}"
            )
        n = len(self.tokens)
        for name, (start, end) in self.segments.items():
            if not 0 <= start < end <= n:
                raise PatchError(f"segment {name!r} spans [{start}, {end}) outside 0..{n}")

    def __len__(self) -> int:
        return len(self.tokens)

    def span(self, name: str, which: str = "prompt") -> tuple[int, int]:
        if name not in self.segments:
            raise PatchError(
                f"the {which} has no segment {name!r}; its segments are: "
                f"{', '.join(self.segments) or '(none)'}"
            )
        return self.segments[name]


def chat_input(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    names: Sequence[str] | None = None,
    add_generation_prompt: bool = True,
) -> PatchInput:
    """Render ``messages`` with the chat template and name one segment per message.

    ``names`` gives each message's segment name (default ``system``, ``user_1``,
    ``assistant_1``, ``user_2``, ...); a segment covers the whole rendered turn, markers
    included. With ``add_generation_prompt`` the trailing assistant header is the segment
    ``generation_prompt``.
    """
    if names is None:
        counts: dict[str, int] = {}
        names = []
        for m in messages:
            counts[m["role"]] = counts.get(m["role"], 0) + 1
            names.append(m["role"] if m["role"] == "system" else f"{m['role']}_{counts[m['role']]}")
    if len(names) != len(messages) or len(set(names)) != len(names):
        raise PatchError(f"need one distinct segment name per message, got {list(names)}")
    render = tokenizer.apply_chat_template
    text = render(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    bounds = [0]
    for k in range(1, len(messages) + 1):
        prefix = render(list(messages[:k]), tokenize=False, add_generation_prompt=False)
        if not text.startswith(prefix):
            raise PatchError(
                "this chat template does not render a conversation as the concatenation of "
                "its turns, so turns cannot be mapped to token segments"
            )
        bounds.append(len(prefix))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in encoded["offset_mapping"]]
    tokens = torch.tensor(encoded["input_ids"], dtype=torch.long)

    def first_token_at(char: int) -> int:
        return next((i for i, s in enumerate(starts) if s >= char), len(starts))

    token_bounds = [first_token_at(c) for c in bounds]
    segments = {
        name: (token_bounds[i], token_bounds[i + 1])
        for i, name in enumerate(names)
        if token_bounds[i] < token_bounds[i + 1]
    }
    if add_generation_prompt and token_bounds[-1] < len(tokens):
        segments[GENERATION_PROMPT] = (token_bounds[-1], len(tokens))
    pieces = tuple(tokenizer.decode([i]).replace("\n", "\\n") for i in encoded["input_ids"])
    return PatchInput(tokens=tokens, segments=segments, token_text=pieces)


@dataclass(frozen=True)
class Column:
    """One column of a patching result: target positions patched together from source ones."""

    label: str
    target_positions: tuple[int, ...]
    source_positions: tuple[int, ...]


def _label(inp: PatchInput, pos: int) -> str:
    return inp.token_text[pos] if inp.token_text else str(int(inp.tokens[pos]))


def align(
    source: PatchInput,
    target: PatchInput,
    segments: Sequence[str] | None = None,
    per: str = "position",
) -> list[Column]:
    """Columns to patch: every position (``segments=None``, prompts of equal length) or the
    positions of the named segments, matched by offset inside each segment.

    ``per="position"`` gives one column per token, ``per="segment"`` one column per segment
    (all its positions patched at once).
    """
    if per not in ("position", "segment"):
        raise PatchError(f"per must be 'position' or 'segment', got {per!r}")
    if segments is None:
        if len(source) != len(target):
            raise PatchError(
                f"source and target prompts differ in length ({len(source)} vs {len(target)} "
                "tokens): name the segments to align (e.g. segments=['user_2'])"
            )
        spans = {"all": ((0, len(target)), (0, len(source)))}
    else:
        spans = {}
        for name in segments:
            t, s = target.span(name, "target prompt"), source.span(name, "source prompt")
            if t[1] - t[0] != s[1] - s[0]:
                raise PatchError(
                    f"segment {name!r} has {t[1] - t[0]} tokens in the target prompt but "
                    f"{s[1] - s[0]} in the source prompt; only segments of equal length can "
                    "be aligned position by position"
                )
            spans[name] = (t, s)
    columns = []
    for name, ((t0, t1), (s0, _)) in spans.items():
        if per == "segment":
            columns.append(Column(name, tuple(range(t0, t1)), tuple(range(s0, s0 + t1 - t0))))
            continue
        for k in range(t1 - t0):
            prefix = "" if segments is None else f"{name}[{k}] "
            columns.append(
                Column(f"{t0 + k}: {prefix}{_label(target, t0 + k)}", (t0 + k,), (s0 + k,))
            )
    return columns
