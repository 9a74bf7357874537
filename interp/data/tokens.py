"""Tokenising transcripts and choosing which tokens a probe reads.

Selections (see the design notes): ``answer`` = the tokens of the last message's answer part;
``reply`` = every token of the last message; ``last`` = the final token of the reply. Where
the answer starts and ends is decided by the one reply grammar,
:func:`interp.data.replies.split_reply`, the same one the judges use. A reply without an
answer marker (or with nothing after it) is read whole under ``answer`` and flagged
(``answer_found=False``), so callers can count such replies instead of crashing on them.

``after:<marker>`` reads the tokens after the last ``<marker>`` of the reply (e.g.
``after:Action:`` scores an insider-trading report after its ``Action:`` line, as Apollo's
deception-detection does, without cutting the text the model reads); a reply without the
marker is read whole and flagged like a missing ``Answer:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from interp.data.replies import Span, split_reply
from interp.data.transcripts import Transcript

#: The named selections; :func:`check_tokens` also accepts ``after:<marker>``.
TOKEN_SELECTIONS: tuple[str, ...] = get_args(Literal["answer", "reply", "last"])
#: A token selection: one of :data:`TOKEN_SELECTIONS` or ``after:<marker>`` (a ``str``, so
#: marker selections pass the run-time annotation checks; :func:`check_tokens` validates).
TokenSelection = str


class TokenSelectionError(ValueError):
    """An unknown token selection, or a transcript the template cannot place."""


#: Prefix of a marker selection: ``after:Action:`` reads the reply after its last ``Action:``.
AFTER_PREFIX = "after:"


def check_tokens(tokens: str) -> TokenSelection:
    if tokens.startswith(AFTER_PREFIX) and tokens[len(AFTER_PREFIX) :].strip():
        return tokens  # type: ignore[return-value]
    if tokens not in TOKEN_SELECTIONS:
        raise TokenSelectionError(
            f"unknown token selection {tokens!r}; choose one of {', '.join(TOKEN_SELECTIONS)} "
            f"or {AFTER_PREFIX}<marker> (e.g. {AFTER_PREFIX}Action:)"
        )
    return tokens  # type: ignore[return-value]


def marker_start(reply: str, marker: str) -> int | None:
    """Character offset in ``reply`` just after its last ``marker`` (leading whitespace
    skipped), or None when the marker is absent or ends the reply."""
    at = reply.rfind(marker)
    if at < 0:
        return None
    start = at + len(marker)
    while start < len(reply) and reply[start].isspace():
        start += 1
    return start if start < len(reply) else None


def answer_span(reply: str) -> Span | None:
    """``(start, end)`` character offsets of the reply's answer part, or None when the reply
    has no answer marker or nothing after it (:func:`~interp.data.replies.split_reply`)."""
    parts = split_reply(reply)
    return parts.answer_span if parts.has_answer_marker else None


def answer_start(reply: str) -> int | None:
    """Character offset in ``reply`` where the answer's text begins, or None if unmarked."""
    span = answer_span(reply)
    return span[0] if span is not None else None


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
    end = len(reply.rstrip())
    if tokens.startswith(AFTER_PREFIX):
        at = marker_start(reply, tokens[len(AFTER_PREFIX) :].strip())
        span = (at, end) if at is not None else None
    else:
        span = answer_span(reply)
    answer_found = span is not None
    if tokens != "reply" and tokens != "last" and span is not None:
        lo, hi = reply_at + span[0], reply_at + span[1]
    else:
        lo, hi = reply_at, reply_at + end
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
