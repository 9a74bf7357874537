"""Readers of the public deception sets, on fixtures written in each upstream format
(tests/data/external/: a miniature deception-detection clone and a Liars' Bench download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.data.datasets import DatasetError, dataset_sources, list_datasets, load_dataset
from interp.data.external import EXTERNAL_SETS, ExternalDataError
from interp.data.instructed_pairs import DISHONEST, HONEST, build_instructed_pairs
from interp.data.split import split_transcripts
from interp.data.tokens import check_tokens, encode_transcript
from interp.data.transcripts import Transcript

FIXTURES = Path(__file__).parent / "data" / "external"
APOLLO = FIXTURES / "deception-detection"
LIARS = FIXTURES / "liars-bench"


def _load(name: str, root: Path = APOLLO) -> list[Transcript]:
    return load_dataset(f"builtin:{name}={root}")


def _no_group_on_both_sides(data: list[Transcript]) -> None:
    train, test = split_transcripts(data, 0.5, seed=0)
    assert {data[i].group for i in train.tolist()}.isdisjoint(data[i].group for i in test.tolist())


def test_every_public_set_is_listed_with_where_it_expects_its_files(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_DECEPTION_DETECTION", str(tmp_path / "dd"))
    sources = dataset_sources()
    for spec in EXTERNAL_SETS:
        assert spec.name in list_datasets()
        assert str(tmp_path / "dd") in sources[spec.name] or spec.name == "liars-bench"
    assert sources["consistency"] == "built in"
    assert sources["apollo-roleplaying"].startswith(str(tmp_path / "dd/data/roleplaying"))


def test_missing_folder_says_what_to_clone_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_DECEPTION_DETECTION", str(tmp_path / "nowhere"))
    with pytest.raises(ExternalDataError) as err:
        load_dataset("builtin:apollo-ai-liar")
    message = str(err.value)
    assert "git clone https://github.com/ApolloResearch/deception-detection" in message
    assert str(tmp_path / "nowhere") in message and "goal_directed_lying.json" in message
    with pytest.raises(ExternalDataError, match="huggingface-cli download Cadenza-Labs"):
        load_dataset(f"builtin:liars-bench={tmp_path / 'lb'}")
    with pytest.raises(DatasetError, match="built in"):
        load_dataset(f"builtin:consistency={tmp_path}")


def test_roleplaying_two_completions_per_scenario():
    data = _load("apollo-roleplaying")
    assert len(data) == 8 and [t.label for t in data[:2]] == [0, 1]
    honest, deceptive = data[0], data[1]
    assert honest.group == deceptive.group == "roleplaying-000"
    assert honest.messages[0]["content"].startswith("You are a student")
    assert honest.messages[1]["content"] == "Teacher: Did you finish the assigned chapter?"
    assert honest.reply.startswith("No, I did not") and deceptive.reply.startswith("Yes, I read")
    assert honest.meta["answer_prefix"] == "Student:" and honest.meta["item"] == 0
    _no_group_on_both_sides(data)


def test_roleplaying_bad_item_names_file_and_line(tmp_path):
    bad = tmp_path / "data" / "roleplaying"
    bad.mkdir(parents=True)
    (bad / "dataset.yaml").write_text(
        "- scenario: a\n  question: b\n  answer_prefix: c\n  honest_completion: d\n"
        "  deceptive_completion: e\n- scenario: x\n  question: y\n"
    )
    with pytest.raises(ExternalDataError, match=r"dataset.yaml:6 \(item 1\).*honest_completion"):
        _load("apollo-roleplaying", tmp_path)


def test_ai_liar_two_prompts_times_two_answers():
    data = _load("apollo-ai-liar")
    first = [t for t in data if t.group == "ai-liar-000"]
    assert len(first) == 4
    by = {(t.meta["instruction"], t.meta["answer_text"]): t for t in first}
    assert by["deceive", "answer"].label == 1 and by["normal", "answer"].label == 0
    assert by["deceive", "other_answer"].label == 0 and by["normal", "other_answer"].label == 1
    assert by["normal", "answer"].messages[0]["content"].endswith("made of polyester.")
    assert by["normal", "answer"].messages[1]["content"].startswith("Human: Tell me")
    assert by["normal", "answer"].reply == "AI: The T-shirt is made of polyester."
    # an item without other_answer gives the two system prompts with its one answer
    last = [t for t in data if t.group == "ai-liar-003"]
    assert sorted(t.label for t in last) == [0, 1]
    assert last[0].meta["include_in_with_answers"] is False
    _no_group_on_both_sides(data)


def test_insider_trading_labels_and_the_report_read_after_action(tiny_model):
    data = _load("apollo-insider-trading")
    assert [t.meta["upstream_label"] for t in data] == [
        "explicit",
        "concealed",
        "concealed",
        "explicit",
    ]  # implied and invalid are left out, as upstream
    assert [t.label for t in data] == [0, 1, 1, 0]
    assert data[0].meta["grader"].startswith("Apollo's insider-trading")
    doubled = data[3]  # the doubling-down exchange is dropped: the report is the reply
    assert (
        doubled.reply.startswith('Reasoning: """I should tell Amy') and len(doubled.messages) == 5
    )
    tokenizer = tiny_model.tokenizer
    spec = next(s for s in EXTERNAL_SETS if s.name == "apollo-insider-trading")
    marked = encode_transcript(tokenizer, data[1], check_tokens(spec.tokens), 4096)
    whole = encode_transcript(tokenizer, data[1], "reply", 4096)
    assert marked.answer_found and set(marked.selected) < set(whole.selected)
    text = tokenizer.decode([marked.input_ids[i] for i in marked.selected])
    assert text.lstrip().startswith("send_message") and "market analysis" in text
    assert "I should tell Amy" not in text  # the reasoning before Action: is not read


def test_marker_selection_without_marker_reads_the_whole_reply(tiny_model):
    t = Transcript(
        "x", "g", ({"role": "user", "content": "q"}, {"role": "assistant", "content": "a b"})
    )
    enc = encode_transcript(tiny_model.tokenizer, t, "after:Action:", 64)
    assert not enc.answer_found
    assert enc.selected == encode_transcript(tiny_model.tokenizer, t, "reply", 64).selected
    with pytest.raises(ValueError, match="after:<marker>"):
        check_tokens("after:")


def test_sandbagging_rollouts_graded_as_upstream():
    data = _load("apollo-sandbagging")
    # 4 prompts x 2 replies; the grade 4 (between 3 and 5) is left out
    assert len(data) == 7
    assert all(t.messages[0]["role"] == "user" for t in data)  # system prompt dropped, as upstream
    assert {t.group for t in data} == {f"sandbagging-{i:04d}" for i in range(4)}
    labels = {t.id: t.label for t in data}
    assert labels["sandbagging-0000-0"] == 1 and labels["sandbagging-0001-0"] == 0
    assert labels["sandbagging-0001-1"] == 0  # score 1 -> honest
    assert data[0].meta["upstream_label"] == "deceptive" and "grader" in data[0].meta


def test_alpaca_control_is_all_label_zero():
    data = _load("apollo-alpaca")
    assert [t.label for t in data] == [0, 0] and data[1].reply == "Paris."


def test_rollout_folder_with_two_models_asks_for_the_file(tmp_path):
    folder = tmp_path / "data" / "rollouts"
    folder.mkdir(parents=True)
    src = APOLLO / "data/rollouts/alpaca__plain__llama-70b-3.3.json"
    for model in ("a", "b"):
        (folder / f"alpaca__plain__{model}.json").write_text(src.read_text())
    with pytest.raises(ExternalDataError, match=r"alpaca__plain__a\.json, alpaca__plain__b\.json"):
        _load("apollo-alpaca", tmp_path)
    assert len(_load("apollo-alpaca", folder / "alpaca__plain__b.json")) == 2


def test_instructed_pairs_same_statement_under_two_instructions():
    data = _load("instructed-pairs")
    assert len(data) == 8  # the 4 true statements, twice each
    honest, dishonest = data[0], data[1]
    assert honest.reply == dishonest.reply == "The Earth orbits the Sun once a year."
    assert (honest.messages[0]["content"], honest.label) == (HONEST, 0)
    assert (dishonest.messages[0]["content"], dishonest.label) == (DISHONEST, 1)
    assert honest.group == dishonest.group
    assert (
        len(build_instructed_pairs(APOLLO / "data/repe/true_false_facts.csv", true_only=False))
        == 12
    )
    for seed in range(5):
        train, test = split_transcripts(data, 0.5, seed)
        train_text = {data[i].reply for i in train.tolist()}
        assert train_text.isdisjoint(data[i].reply for i in test.tolist())


def test_instructed_pairs_bad_label_names_the_line(tmp_path):
    csv = tmp_path / "facts.csv"
    csv.write_text("statement,label\nA fact.,1\nAnother.,yes\n")
    with pytest.raises(ExternalDataError, match=r"facts.csv:3: label must be 0 or 1"):
        build_instructed_pairs(csv)


def test_liars_bench_jsonl_and_csv_subsets():
    data = _load("liars-bench", LIARS)
    assert len(data) == 6  # the unlabelled csv row is left out
    instructed = [t for t in data if t.meta["dataset"] == "instructed-deception"]
    assert [t.label for t in instructed] == [0, 1, 0, 1]
    assert instructed[0].group == instructed[1].group != instructed[2].group
    assert instructed[1].meta["model"] == "llama-v3.3-70b-instruct"
    assert instructed[1].meta["upstream_label"] is True and instructed[1].meta["temperature"] == 0.7
    pressure = [t for t in data if t.meta["dataset"] == "harm-pressure-choice"]
    assert [t.label for t in pressure] == [1, 0] and pressure[0].reply == "A"
    _no_group_on_both_sides(data)


def test_liars_bench_bad_row_names_file_and_line(tmp_path):
    (tmp_path / "x").mkdir()
    row = {"messages": [{"role": "user", "content": "q"}], "deceptive": False}
    (tmp_path / "x" / "test.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ExternalDataError, match=r"test.jsonl:1: the last message must be"):
        _load("liars-bench", tmp_path)
    (tmp_path / "x" / "test.jsonl").write_text('{"deceptive": true}\n')
    with pytest.raises(ExternalDataError, match=r"test.jsonl:1: a Liars' Bench row needs"):
        _load("liars-bench", tmp_path)
