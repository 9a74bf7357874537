"""The hand-labelled reference sets: complete, valid, and scored by
interp.text.judging.accuracy (experiments/judge_accuracy.py)."""

import json
import runpy
from collections import Counter
from pathlib import Path

import pytest

from interp.data.hand_labelled import SETS as SET_NAMES
from interp.data.hand_labelled import annotator, reference_set
from interp.data.scenarios import load_bank
from interp.data.transcripts import load_transcripts
from interp.text.judging import import_labels
from interp.text.judging.accuracy import REFERENCES, judge_accuracy
from interp.text.reference_set import ReferenceSetConfig, draw, make_reference_set

REFERENCE = reference_set("tuning")  # the set the rule judge was tuned on
FRESH = reference_set("fresh")  # labelled later; read while writing follow-up criteria
SEED2 = reference_set("seed2")  # two annotators; scored, then read to revise the judge
SEED3 = reference_set("seed3")  # two annotators; the revised judge's test set
SETS = [REFERENCE, FRESH, SEED2, SEED3]

# Regression guard, not a target: the rule judge's answer_undesired accuracy as measured with
# experiments/judge_accuracy.py (2026-11-29), so that a rule change that makes it worse by
# more than two replies fails here. The target (0.85) is reported, not asserted.
MEASURED = {  # (set, correct, replies)
    "fresh": (FRESH, 45, 64),
    "seed2": (SEED2, 55, 66),
    "seed3": (SEED3, 42, 66),
}


@pytest.mark.parametrize("reference", SETS, ids=["tuning", "fresh", "seed2", "seed3"])
def test_reference_set_is_complete_and_valid(reference):
    replies = load_transcripts(reference / "replies.jsonl")
    bank = {s.id for s in load_bank()}
    assert len(replies) >= 60
    assert all(t.group in bank and t.meta.get("generated") for t in replies)
    by_id = {t.id: t.reply for t in replies}
    for name in ("labels.jsonl", "labels_second.jsonl"):
        if name != "labels.jsonl" and not (reference / name).is_file():
            continue
        assert set(import_labels(reference / name)) == set(by_id)
        # Every label row carries the reply it labels, unchanged.
        rows = [json.loads(line) for line in (reference / name).read_text().splitlines()]
        assert all(row["reply"] == by_id[row["id"]] for row in rows)


def test_reference_sets_share_no_reply():
    replies = [{t.reply for t in load_transcripts(r / "replies.jsonl")} for r in SETS]
    assert sum(map(len, replies)) == len(set().union(*replies))


def test_judge_accuracy_scores_the_rule_judge():
    assert list(REFERENCES) == SETS  # the default sets are these
    results = judge_accuracy(REFERENCE)
    fields = results["judges"]["rule"]["fields"]
    assert results["n"] >= 60
    assert set(fields) == {"reasoning_present", "reasoning_stance", "answer_undesired", "rbd"}
    assert all(0.0 <= f["accuracy"] <= 1.0 for f in fields.values())
    table = results["judges"]["rule"]["confusion_answer_undesired"]
    assert sum(sum(row.values()) for row in table.values()) == results["n"]


@pytest.mark.parametrize("name", list(MEASURED))
def test_rule_judge_accuracy_does_not_regress(name):
    reference, correct, n = MEASURED[name]
    results = judge_accuracy(reference)
    accuracy = results["judges"]["rule"]["fields"]["answer_undesired"]["accuracy"]
    assert results["n"] == n
    assert accuracy >= (correct - 2) / n, (
        f"rule judge answer_undesired accuracy on {reference.name} fell to {accuracy:.3f} "
        f"(measured {correct}/{n})"
    )


def test_reference_set_draw_is_seeded_and_covers_each_condition():
    ids = [s.id for s in load_bank() if s.kind == "pressure"]
    chosen = draw(ids, 5, seed=3)
    assert chosen == draw(ids, 5, seed=3) and chosen != draw(ids, 5, seed=4)
    conditions = Counter(pid.rsplit("-", 1)[1].rstrip("01") for pid in chosen)
    assert conditions == {"natural": 5, "refusal": 5, "rebuttal": 5}
    assert all(pid.rsplit("-", 1)[0] in ids for pid in chosen)
    with pytest.raises(ValueError, match="per-condition"):
        draw(ids, 0, seed=3)


def test_make_reference_set_writes_replies_and_a_labelling_template(tmp_path):
    config = ReferenceSetConfig(
        model="tiny-random", per_condition=2, max_new_tokens=3, device="cpu", out=str(tmp_path)
    )
    assert make_reference_set(config) == tmp_path
    replies = load_transcripts(tmp_path / "replies.jsonl")
    assert len(replies) == 6
    assert {t.meta["condition"] for t in replies} == {"natural", "refusal", "rebuttal"}
    assert all(len(t.messages) == 5 and t.meta["generated"] for t in replies)
    rows = [json.loads(line) for line in (tmp_path / "to_label.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [t.id for t in replies]
    assert all(r["answer_undesired"] == "" for r in rows)


def test_judge_accuracy_script_prints_and_writes_every_set(tmp_path, capsys):
    script = runpy.run_path(str(Path(__file__).parent.parent / "experiments" / "judge_accuracy.py"))
    out = tmp_path / "accuracy.json"
    args = ["--reference", str(SEED2), "--labels-dir", str(SEED3), "--json", str(out)]
    assert script["main"](args) == 0
    printed = capsys.readouterr().out
    assert f"({SEED2};" in printed and f"({SEED3};" in printed
    assert "labels.jsonl made by: language-model annotator" in printed
    assert "human" not in printed  # the labels were made by a language model
    assert "second labeller vs labels.jsonl" in printed
    assert "labels.jsonl of follow-up replies by condition" in printed
    saved = json.loads(out.read_text())
    assert [s["reference"] for s in saved["sets"]] == [str(SEED2), str(SEED3)]
    assert saved["sets"][0]["annotator"]["kind"] == "language-model"
    assert set(saved["hand_rates_by_condition"]) == {"natural", "refusal", "rebuttal"}
    assert script["main"](["--reference", str(tmp_path)]) == 2  # no replies.jsonl there
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("name", SET_NAMES)
def test_every_shipped_set_records_who_labelled_it(name):
    folder = reference_set(name)
    for labels in sorted(folder.glob("labels*.jsonl")):
        who = annotator(folder, labels.name)
        # every set shipped here was labelled by language-model sessions: never called human
        assert who.kind == "language-model" and who.model and who.who and who.made


def test_annotators_file_is_checked(tmp_path):
    assert annotator(tmp_path).kind == "unrecorded"  # a user's own set without the file
    (tmp_path / "annotators.json").write_text('{"labels.jsonl": {"kind": "robot"}}')
    with pytest.raises(ValueError, match=r"annotators\.json.*human.*language-model"):
        annotator(tmp_path)
    (tmp_path / "annotators.json").write_text('{"labels.jsonl": {"kind": "human", "age": 3}}')
    with pytest.raises(ValueError, match="unknown keys"):
        annotator(tmp_path)
    (tmp_path / "annotators.json").write_text('{"labels.jsonl": {"kind": "human", "who": "me"}}')
    assert annotator(tmp_path).describe() == "human annotator"
