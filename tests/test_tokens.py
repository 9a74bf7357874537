import pytest

from interp.data.tokens import TokenSelectionError, answer_start, check_tokens, encode_transcript
from interp.data.transcripts import Transcript


def make(reply: str) -> Transcript:
    return Transcript(
        id="t",
        group="g",
        messages=(
            {"role": "system", "content": "You are Dana."},
            {"role": "user", "content": "Manager: hide it."},
            {"role": "assistant", "content": reply},
        ),
    )


def decode(tokenizer, enc):
    return tokenizer.decode([enc.input_ids[i] for i in enc.selected])


def test_answer_tokens_are_exactly_the_answer(tiny_model):
    tok = tiny_model.tokenizer
    enc = encode_transcript(
        tok, make("Reasoning: I should not.\nAnswer: I won't hide it."), "answer", 512
    )
    assert decode(tok, enc).strip() == "I won't hide it."
    assert enc.answer_found and not enc.truncated
    reply = encode_transcript(tok, make("Reasoning: I should not.\nAnswer: No."), "reply", 512)
    assert decode(tok, reply).strip() == "Reasoning: I should not.\nAnswer: No."
    last = encode_transcript(tok, make("Reasoning: I should not.\nAnswer: No."), "last", 512)
    assert len(last.selected) == 1 and decode(tok, last).strip() == "."


def test_marker_casing_and_position():
    assert answer_start("reasoning: x\nANSWER: y") == len("reasoning: x\nANSWER: ")
    assert answer_start("Reasoning: the answer: is unclear\nAnswer: no") == len(
        "Reasoning: the answer: is unclear\nAnswer: "
    )
    assert answer_start("Reasoning: x. Answer: y") == len("Reasoning: x. Answer: ")
    assert answer_start("Reasoning: only thoughts") is None


def test_missing_answer_is_read_whole_and_flagged(tiny_model):
    tok = tiny_model.tokenizer
    enc = encode_transcript(tok, make("Reasoning: fine.\n\nSure, here it is."), "answer", 512)
    assert not enc.answer_found
    assert decode(tok, enc).strip() == "Reasoning: fine.\n\nSure, here it is."


def test_empty_reply_does_not_crash(tiny_model):
    enc = encode_transcript(tiny_model.tokenizer, make(""), "answer", 512)
    assert len(enc.selected) == 1 and not enc.answer_found


def test_truncation_keeps_the_reply(tiny_model):
    tok = tiny_model.tokenizer
    long_reply = "Reasoning: " + "blah " * 300 + "\nAnswer: Final words."
    enc = encode_transcript(tok, make(long_reply), "answer", 64)
    assert enc.truncated and len(enc.input_ids) == 64
    assert decode(tok, enc).strip() == "Final words."


def test_unknown_selection():
    with pytest.raises(TokenSelectionError, match="answer, reply, last"):
        check_tokens("all")
