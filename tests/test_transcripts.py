import json

import pytest

from interp.data.transcripts import TranscriptError, load_transcripts, write_transcripts

GOOD = {
    "id": "x-1",
    "group": "x",
    "messages": [
        {"role": "system", "content": "You are Dana."},
        {"role": "user", "content": "Hide the flood."},
        {"role": "assistant", "content": "Reasoning: no.\nAnswer: I won't."},
    ],
    "label": 0,
    "meta": {"reasoning": "ethical", "answer": "refuse"},
}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip(tmp_path):
    path = write_lines(
        tmp_path / "d.jsonl", [json.dumps(GOOD), "", json.dumps({**GOOD, "id": "x-2"})]
    )
    data = load_transcripts(path)
    assert [t.id for t in data] == ["x-1", "x-2"]
    assert data[0].reply.startswith("Reasoning:")
    write_transcripts(tmp_path / "out.jsonl", data)
    assert load_transcripts(tmp_path / "out.jsonl") == data


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"d.jsonl:2: not valid JSON"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "messages"}),
            r"d.jsonl:2: .*'messages'",
        ),
        (json.dumps({**GOOD, "label": 2}), r"d.jsonl:2: 'label' must be 0, 1"),
        (
            json.dumps({**GOOD, "messages": [{"role": "bot", "content": "hi"}]}),
            r"d.jsonl:2: .*role 'bot'",
        ),
        (json.dumps({**GOOD, "messages": GOOD["messages"][:2]}), r"d.jsonl:2: the last message"),
        (json.dumps([1, 2]), r"d.jsonl:2: expected a JSON object"),
        (json.dumps(GOOD), r"duplicate transcript ids"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD), line])
    with pytest.raises(TranscriptError, match=message):
        load_transcripts(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(TranscriptError, match="no such file"):
        load_transcripts(tmp_path / "nope.jsonl")
    with pytest.raises(TranscriptError, match="holds no transcripts"):
        load_transcripts(write_lines(tmp_path / "e.jsonl", [""]))
