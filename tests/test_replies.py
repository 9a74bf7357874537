"""The one reply grammar (interp.data.replies): which markers count, where the parts are, and
that the probe's token selection, the organism's read position and the judges cut a reply at
the same place."""

import pytest

from interp.data.replies import split_reply
from interp.data.tokens import answer_span, encode_transcript
from interp.data.transcripts import Transcript
from interp.organism.positions import pre_answer
from interp.text.judging import RuleJudge
from interp.text.judging import split_reply as judges_split

# (reply, (reasoning, answer, has reasoning marker, has answer marker))
CASES = [
    ("Reasoning: think\nAnswer: do", ("think", "do", True, True)),
    ("reasoning: think\nanswer: do", ("think", "do", True, True)),
    ("REASONING - think\nANSWER - do", ("think", "do", True, True)),
    ("Reasoning: think\nAnswer - do", ("think", "do", True, True)),
    ("Reasoning: think\nAnswer \u2014 do", ("think", "do", True, True)),
    ("**Reasoning:** think\n\n**Answer:** do", ("think", "do", True, True)),
    ("**Reasoning**: think\n**Answer**: do", ("think", "do", True, True)),
    ("__Answer:__ do", (None, "do", False, True)),
    ("## Reasoning\u2014 think\n## Answer: do", ("think", "do", True, True)),
    ("### Reasoning:\nthink\n\n### Answer:\ndo", ("think", "do", True, True)),
    ("  Reasoning: think\n  Answer: do", ("think", "do", True, True)),
    ("Sure, here goes.\nReasoning: think\nAnswer: do", ("think", "do", True, True)),
    # A marker word quoted inside the reasoning does not cut it: line markers come first.
    (
        "Reasoning: the answer: is unclear\nAnswer: no",
        ("the answer: is unclear", "no", True, True),
    ),
    ("Reasoning: my answer - no.\nAnswer: no", ("my answer - no.", "no", True, True)),
    # Inline fallback, only when no line marker is there.
    ("Reasoning: inline. Answer: do.", ("inline.", "do.", True, True)),
    ("Reasoning: x, so the answer: no", ("x, so the", "no", True, True)),
    ("Sure. Reasoning: think. Answer: do", ("think.", "do", True, True)),
    # An inline dash is prose, not a marker.
    ("Reasoning: think. Answer - do", ("think. Answer - do", None, True, False)),
    # Two answer markers: the last one is the answer; the first stays in the reasoning.
    ("Reasoning: r\nAnswer: A\nAnswer: B", ("r\nAnswer: A", "B", True, True)),
    ("Answer: A\nReasoning: r\nAnswer: B", ("r", "B", True, True)),
    # Two reasoning markers: the first one starts the reasoning.
    ("Reasoning: a\nReasoning: b\nAnswer: c", ("a\nReasoning: b", "c", True, True)),
    # The answer before the reasoning: it ends where the reasoning marker starts.
    ("Answer: do\nReasoning: think", ("think", "do", True, True)),
    ("I thought about it.\nAnswer: do", ("I thought about it.", "do", False, True)),
    ("Answer: do", (None, "do", False, True)),
    ("Reasoning: only thinking, then cut off", ("only thinking, then cut off", None, True, False)),
    ("Just an answer.", (None, "Just an answer.", False, False)),
    # Not markers: a word before the marker, a bare heading, a hyphenated word.
    ("Final answer: do", ("Final", "do", False, True)),  # inline fallback, not a line marker
    ("Reasoning: r\nFinal answer: do", ("r\nFinal", "do", True, True)),
    ("## Answer\nI won't.", (None, "## Answer\nI won't.", False, False)),
    ("- Answer - fine", (None, "- Answer - fine", False, False)),
    ("Reasoning-based pricing is fine.", (None, "Reasoning-based pricing is fine.", False, False)),
    ("Answering: yes", (None, "Answering: yes", False, False)),
    ("Reasoning:\nAnswer:", (None, None, True, True)),
    ("Reasoning: think\nAnswer:   \n", ("think", None, True, True)),
    ("", (None, None, False, False)),
    ("  \n ", (None, None, False, False)),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_split_reply(text, expected):
    parts = split_reply(text)
    got = (parts.reasoning, parts.answer, parts.has_reasoning_marker, parts.has_answer_marker)
    assert got == expected


@pytest.mark.parametrize("text", [text for text, _ in CASES])
def test_spans_point_at_the_parts(text):
    parts = split_reply(text)
    for part, span in ((parts.reasoning, parts.reasoning_span), (parts.answer, parts.answer_span)):
        assert (part is None) == (span is None)
        if span is not None:
            assert text[span[0] : span[1]] == part
    for marker in (parts.reasoning_marker, parts.answer_marker):
        if marker is not None:
            assert (
                text[marker[0] : marker[1]]
                .strip(" \t*_#")
                .lower()
                .startswith(("reasoning", "answer"))
            )


def test_marker_spans():
    text = "Preamble.\n**Reasoning:** think\n## Answer - do"
    parts = split_reply(text)
    assert text[slice(*parts.reasoning_marker)] == "**Reasoning:**"
    assert text[slice(*parts.answer_marker)] == "## Answer - "
    assert parts.reasoning_span == (text.index("think"), text.index("think") + 5)
    assert parts.answer_span == (text.index("do"), len(text))


def test_the_judges_use_this_grammar():
    assert judges_split is split_reply


def chat(reply: str) -> Transcript:
    return Transcript(
        id="t",
        group="sales-carflood",
        messages=(
            {"role": "system", "content": "You are Dana."},
            {"role": "user", "content": "Manager: hide it."},
            {"role": "assistant", "content": reply},
        ),
    )


ODD = [
    "## Reasoning: I should not hide it.\n## Answer: I won't hide it.",
    "Reasoning: I should not.\nAnswer - I won't hide it.",
    "**Reasoning:** I should not.\n\n**Answer:** I won't hide it.",
    "reasoning: fine\nanswer: I won't hide it.",
    "Reasoning: the answer: is unclear. So no. Answer: I won't hide it.",
    "Answer: I won't hide it.\nReasoning: hiding it is wrong.",
    "Reasoning: r\nAnswer: maybe\nAnswer: I won't hide it.",
]


@pytest.mark.parametrize("reply", ODD)
def test_probe_tokens_and_organism_position_follow_the_judges_split(tiny_model, reply):
    """A probe reads exactly the answer the judge reads, and the organism's ``pre_answer``
    position ends just before the same answer marker."""
    tok = tiny_model.tokenizer
    parts = split_reply(reply)
    assert parts.answer == "I won't hide it."
    enc = encode_transcript(tok, chat(reply), "answer", 512)
    assert enc.answer_found
    assert tok.decode([enc.input_ids[i] for i in enc.selected]).strip() == parts.answer
    assert answer_span(reply) == parts.answer_span
    cut = pre_answer(chat(reply))
    head = reply[: parts.answer_marker[0]].rstrip()
    assert (cut is None) == (not head)
    if cut is not None:
        assert cut.reply == head


def test_rule_judge_reads_an_odd_marker_answer(tiny_model):
    """The rule judge finds the answer after a ``## Answer:`` heading (before the one grammar,
    token selection read this reply whole)."""
    from interp.data.scenarios import load_bank

    sales = next(s for s in load_bank() if s.id == "sales-carflood")
    reply = f"## Reasoning: {sales.reasoning_ethical[0]}\n## Answer: {sales.answers_comply[0]}"
    verdict = RuleJudge().judge(chat(reply), sales)
    assert verdict.reasoning_present and verdict.answer_undesired == "yes"
    enc = encode_transcript(tiny_model.tokenizer, chat(reply), "answer", 512)
    decoded = tiny_model.tokenizer.decode([enc.input_ids[i] for i in enc.selected])
    assert decoded.strip() == sales.answers_comply[0].strip()
