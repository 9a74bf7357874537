"""Splitting a reply into its reasoning and its answer at ``Reasoning:`` / ``Answer:`` markers.

:func:`split_reply` gives :class:`ReplyParts`; markers are matched at a line start first
(any casing, a colon or a dash, markdown bold or headings), then inline ("... Answer: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A marker that starts a line: "Reasoning:", "REASONING -", "**Reasoning:**", "## Answer:".
_LINE_MARKER = (
    r"^[ \t]*(?:\#+[ \t]*)?[*_]*[ \t]*{word}[ \t]*[*_]*[ \t]*(?::|[-\u2013\u2014](?=\s))[ \t]*[*_]*"
)
# Fallback: the word followed by a colon anywhere ("... so no. Answer: I won't.").
_INLINE_MARKER = r"\b{word}[ \t]*[*_]*[ \t]*:[ \t]*[*_]*"


def _marker_patterns(word: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    flags = re.IGNORECASE | re.MULTILINE
    return (
        re.compile(_LINE_MARKER.format(word=word), flags),
        re.compile(_INLINE_MARKER.format(word=word), flags),
    )


_REASONING_MARKERS = _marker_patterns("reasoning")
_ANSWER_MARKERS = _marker_patterns("answer")


@dataclass(frozen=True)
class ReplyParts:
    """A reply cut at its markers; a part is None when absent or empty."""

    reasoning: str | None
    answer: str | None
    has_reasoning_marker: bool
    has_answer_marker: bool


def _find_marker(
    patterns: tuple[re.Pattern[str], re.Pattern[str]], text: str, last: bool, after: int = 0
) -> re.Match[str] | None:
    """The first (or last) marker at or after ``after``: line-start markers before inline."""
    for pattern in patterns:
        matches = [m for m in pattern.finditer(text) if m.start() >= after]
        if matches:
            return matches[-1] if last else matches[0]
    return None


def _clean(part: str) -> str | None:
    part = part.strip()
    return part or None


def split_reply(text: str) -> ReplyParts:
    """Split a reply into reasoning and answer at its ``Reasoning:`` / ``Answer:`` markers.

    Markers may use any casing, a colon or a dash, and markdown bold or headings. The first
    reasoning marker and the last answer marker after it count (reasoning may quote the word
    "answer:"), as in :func:`interp.data.tokens.answer_start`. Text before the first marker is a
    preamble and is dropped, except that with an answer marker and no reasoning marker the
    text before the answer is taken as unmarked reasoning. Without any marker the whole text
    is the answer. Empty text gives two Nones.
    """
    if not text or not text.strip():
        return ReplyParts(None, None, False, False)
    r_mark = _find_marker(_REASONING_MARKERS, text, last=False)
    a_mark = None
    if r_mark is not None:
        a_mark = _find_marker(_ANSWER_MARKERS, text, last=True, after=r_mark.end())
    if a_mark is None:
        a_mark = _find_marker(_ANSWER_MARKERS, text, last=True)
    if r_mark is None and a_mark is None:
        return ReplyParts(None, _clean(text), False, False)
    if r_mark is None:
        assert a_mark is not None
        return ReplyParts(_clean(text[: a_mark.start()]), _clean(text[a_mark.end() :]), False, True)
    if a_mark is None:
        return ReplyParts(_clean(text[r_mark.end() :]), None, True, False)
    if a_mark.start() >= r_mark.end():
        reasoning = text[r_mark.end() : a_mark.start()]
        answer = text[a_mark.end() :]
    else:  # the answer came first: "Answer: ... Reasoning: ..."
        answer = text[a_mark.end() : r_mark.start()]
        reasoning = text[r_mark.end() :]
    return ReplyParts(_clean(reasoning), _clean(answer), True, True)
