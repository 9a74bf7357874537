"""The one grammar of a reply: where its reasoning and its answer are.

Every part of the toolkit that needs a reply's answer uses :func:`split_reply`: the token
selection a probe reads (:mod:`interp.data.tokens`), the organism's read positions
(:mod:`interp.organism.positions`) and the judges (:mod:`interp.text.judging`), so a probe and
a judge always cut a reply at the same place.

Markers (the words ``Reasoning`` and ``Answer``, any casing):

- A *line marker* starts a line: optional spaces, an optional markdown heading (``#``,
  ``##``, ...), optional emphasis (``*``, ``_``), the word, optional emphasis, then a colon or a
  dash (``-``, en dash, em dash) followed by white space. Emphasis closing after the colon is
  part of the marker. ``Answer:``, ``answer:``, ``ANSWER -``, ``**Answer:**``, ``**Answer**:``,
  ``## Answer:`` and ``Answer — ...`` all count; a bare heading without a colon or dash
  (``## Answer``) and a word before the marker (``Final answer:``, ``- Answer:``) do not.
- An *inline marker* is the word followed by a colon anywhere (``... so no. Answer: I
  won't.``); it is a fallback, used only when no line marker of that word is found where one
  is looked for. A dash never makes an inline marker (``the answer - as ever -`` is prose).

Which markers cut the reply:

- the reasoning starts after the *first* reasoning marker (line markers before inline ones);
  text before it is a preamble and belongs to neither part;
- the answer starts after the *last* answer marker that follows the reasoning marker (line
  markers before inline ones, so reasoning that quotes "the answer: ..." mid-line does not
  count, and a reply that answers twice is read at its final answer; the earlier answer
  stays in the reasoning); if none follows it, the last answer marker anywhere (an answer
  written before its reasoning ends where the reasoning marker starts);
- with an answer marker and no reasoning marker, the text before the answer is unmarked
  reasoning; with a reasoning marker and no answer marker there is no answer; with no marker
  at all the whole text is the answer (``has_answer_marker`` is False: token selection reads
  such a reply whole and flags it).

A part is stripped of surrounding white space and is None when absent or empty; its span
gives its character offsets in the reply (``reply[start:end] == part``), which is what token
selection needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_MARKER = (
    r"^[ \t]*(?:\#+[ \t]*)?[*_]*[ \t]*{word}[ \t]*[*_]*[ \t]*(?::|[-\u2013\u2014](?=\s))[ \t]*[*_]*"
)
_INLINE_MARKER = r"\b{word}[ \t]*[*_]*[ \t]*:[ \t]*[*_]*"

Span = tuple[int, int]


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
    """A reply cut at its markers.

    ``reasoning`` and ``answer`` are the stripped parts (None when absent or empty);
    ``reasoning_span``/``answer_span`` their ``(start, end)`` character offsets in the reply;
    ``reasoning_marker``/``answer_marker`` the offsets of the markers that cut it (None when
    the reply has none).
    """

    reasoning: str | None
    answer: str | None
    reasoning_span: Span | None
    answer_span: Span | None
    reasoning_marker: Span | None
    answer_marker: Span | None

    @property
    def has_reasoning_marker(self) -> bool:
        return self.reasoning_marker is not None

    @property
    def has_answer_marker(self) -> bool:
        return self.answer_marker is not None


def _find_marker(
    patterns: tuple[re.Pattern[str], re.Pattern[str]], text: str, last: bool, after: int = 0
) -> re.Match[str] | None:
    """The first (or last) marker at or after ``after``: line markers before inline ones."""
    for pattern in patterns:
        matches = [m for m in pattern.finditer(text) if m.start() >= after]
        if matches:
            return matches[-1] if last else matches[0]
    return None


def _part(text: str, start: int, end: int) -> tuple[str | None, Span | None]:
    """``text[start:end]`` stripped, with its offsets; (None, None) when only white space."""
    segment = text[start:end]
    stripped = segment.strip()
    if not stripped:
        return None, None
    lo = start + len(segment) - len(segment.lstrip())
    return stripped, (lo, lo + len(stripped))


def _bounds(text: str, r_mark: Span | None, a_mark: Span | None) -> tuple[Span | None, Span | None]:
    """Where each part may lie before stripping, (reasoning, answer); None: no such part."""
    end = len(text)
    if a_mark is None:
        return ((r_mark[1], end), None) if r_mark is not None else (None, (0, end))
    if r_mark is None:
        return (0, a_mark[0]), (a_mark[1], end)
    if a_mark[0] >= r_mark[1]:
        return (r_mark[1], a_mark[0]), (a_mark[1], end)
    # The answer came first: "Answer: ... Reasoning: ..."
    return (r_mark[1], end), (a_mark[1], r_mark[0])


def _cut(text: str, bounds: Span | None) -> tuple[str | None, Span | None]:
    return _part(text, *bounds) if bounds is not None else (None, None)


def split_reply(text: str) -> ReplyParts:
    """Cut a reply into its reasoning and its answer by the module's grammar."""
    r_match = _find_marker(_REASONING_MARKERS, text, last=False)
    a_match = None
    if r_match is not None:
        a_match = _find_marker(_ANSWER_MARKERS, text, last=True, after=r_match.end())
    if a_match is None:
        a_match = _find_marker(_ANSWER_MARKERS, text, last=True)
    r_mark = r_match.span() if r_match is not None else None
    a_mark = a_match.span() if a_match is not None else None
    reasoning_bounds, answer_bounds = _bounds(text, r_mark, a_mark)
    reasoning, reasoning_span = _cut(text, reasoning_bounds)
    answer, answer_span = _cut(text, answer_bounds)
    return ReplyParts(reasoning, answer, reasoning_span, answer_span, r_mark, a_mark)
