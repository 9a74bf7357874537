"""Tokenising transcripts and choosing which tokens a probe reads.

Selections (see the design notes): ``answer`` = the tokens after the ``Answer:`` marker of the
last message; ``reply`` = every token of the last message; ``last`` = the final token of the
reply. A reply without an ``Answer:`` marker is read whole under ``answer`` and flagged
(``answer_found=False``), so callers can count such replies instead of crashing on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from interp.data.transcripts import Transcript

TokenSelection = Literal["answer", "reply", "last"]
TOKEN_SELECTIONS: tuple[str, ...] = get_args(TokenSelection)

# "Answer:" at the start of a line, any casing, optionally in markdown bold.
_ANSWER_LINE = re.compile(r"^[ \t]*\**[ \t]*answer[ \t]*\**[ \t]*:", re.IGNORECASE | re.MULTILINE)
# Fallback: "Answer:" anywhere (a reply that runs reasoning and answer into one line).
_ANSWER_INLINE = re.compile(r"\banswer[ \t]*:", re.IGNORECASE)


class TokenSelectionError(ValueError):
    """An unknown token selection, or a transcript the template cannot place."""


def check_tokens(tokens: str) -> TokenSelection:
    if tokens not in TOKEN_SELECTIONS:
        raise TokenSelectionError(
            f"unknown token selection {tokens!r}; choose one of {', '.join(TOKEN_SELECTIONS)}"
        )
    return tokens  # type: ignore[return-value]


def answer_start(reply: str) -> int | None:
    """Character offset in ``reply`` where the answer's text begins, or None if unmarked.

    Takes the last ``Answer:`` that starts a line (reasoning may quote the word earlier),
    else the last inline one.
    """
    for pattern in (_ANSWER_LINE, _ANSWER_INLINE):
        matches = list(pattern.finditer(reply))
        if matches:
            start = matches[-1].end()
            while start < len(reply) and reply[start].isspace():
                start += 1
            return start if start < len(reply) else None
    return None


@dataclass(frozen=True)
class EncodedTranscript:
    """Token ids of a rendered transcript and the positions a probe reads."""

    input_ids: list[int]
    selected: list[int]  # positions into input_ids, in order
    answer_found: bool
    truncated: bool


def encode_transcript(
    tokenizer: Any, transcript: Transcript, tokens: TokenSelection, max_tokens: int
) -> EncodedTranscript:
    """Render with the chat template, tokenise, and select positions.

    Text longer than ``max_tokens`` is cut from the left, so the reply (at the end) is kept.
    """
    text = tokenizer.apply_chat_template(list(transcript.messages), tokenize=False)
    reply = transcript.reply
    reply_at = text.rfind(reply)  # an empty reply "matches" at the end of the text
    if reply_at < 0:
        raise TokenSelectionError(
            f"transcript {transcript.id!r}: the chat template changed the reply's text, so its "
            "tokens cannot be located; check the tokenizer's chat template"
        )
    ans = answer_start(reply)
    answer_found = ans is not None
    if tokens == "answer" and ans is not None:
        lo, hi = reply_at + ans, reply_at + len(reply.rstrip())
    else:
        lo, hi = reply_at, reply_at + len(reply.rstrip())
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    offsets: list[tuple[int, int]] = enc["offset_mapping"]
    selected = [i for i, (s, e) in enumerate(offsets) if s < hi and e > lo and e > s]
    if not selected:
        # An empty reply: read the last token at or before where it would start.
        selected = [max(i for i, (s, _) in enumerate(offsets) if s <= lo)]
    if tokens == "last":
        selected = selected[-1:]
    truncated = len(ids) > max_tokens
    if truncated:
        cut = len(ids) - max_tokens
        ids = ids[cut:]
        selected = [i - cut for i in selected if i >= cut] or [len(ids) - 1]
    return EncodedTranscript(ids, selected, answer_found, truncated)
