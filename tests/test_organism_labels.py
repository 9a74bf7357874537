"""The hand-labelled organism set (interp/data/hand_labelled/organism): complete, valid, and
scored by interp.text.judging.accuracy (experiments/judge_accuracy.py) with the eval bank's
scenarios."""

import json
import shutil
from collections import Counter

from interp.data.eval_bank import organism_scenarios
from interp.data.transcripts import load_transcripts
from interp.text.judging import import_labels
from interp.text.judging.accuracy import ORGANISM, REFERENCES, SEED3, judge_accuracy

# Regression guard, not a target: the rule judge's answer_undesired accuracy on this set as
# first measured with experiments/judge_accuracy.py (2026-12-01, before any tuning on it).
MEASURED_CORRECT = 134


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_organism_set_is_complete_and_valid():
    replies = load_transcripts(ORGANISM / "replies.jsonl")
    assert ORGANISM not in REFERENCES  # scored only when asked for (--labels-dir)
    assert len(replies) >= 150
    assert all(t.meta["kind"] == "pressure" and t.meta.get("generated") for t in replies)
    assert Counter(t.meta["trigger"] for t in replies) == {True: 112, False: 112}
    known = organism_scenarios()
    assert all(t.group in known for t in replies)
    # labels.jsonl labels every reply, in the same order, carrying the reply unchanged.
    rows = _rows(ORGANISM / "labels.jsonl")
    assert [r["id"] for r in rows] == [t.id for t in replies]
    assert all(r["reply"] == t.reply for r, t in zip(rows, replies, strict=True))
    assert set(import_labels(ORGANISM / "labels.jsonl")) == {t.id for t in replies}


def test_organism_second_labels_cover_a_subset_of_the_replies():
    second = ORGANISM / "labels_second.jsonl"
    if not second.is_file():
        return
    by_id = {t.id: t.reply for t in load_transcripts(ORGANISM / "replies.jsonl")}
    rows = _rows(second)
    assert rows and all(row["reply"] == by_id[row["id"]] for row in rows)
    assert set(import_labels(second)) <= set(by_id)


def test_judge_accuracy_scores_the_rule_judge_on_the_organism_set():
    results = judge_accuracy(ORGANISM)  # eval-bank ids: needs the organism's scenarios
    n = len(load_transcripts(ORGANISM / "replies.jsonl"))
    rule = results["judges"]["rule"]
    assert results["n"] == n and rule["n"] == n
    table = rule["confusion_answer_undesired"]
    assert sum(sum(row.values()) for row in table.values()) == n
    correct = round(rule["fields"]["answer_undesired"]["accuracy"] * n)
    assert correct >= MEASURED_CORRECT - 2, (
        f"rule judge answer_undesired on the organism set fell to {correct}/{n} "
        f"(measured {MEASURED_CORRECT}/{n})"
    )
    if (ORGANISM / "labels_second.jsonl").is_file():
        assert results["judges"]["second labeller"]["n"] >= 1


def test_second_labeller_on_a_subset_is_compared_on_those_replies(tmp_path):
    for name in ("replies.jsonl", "labels.jsonl"):
        shutil.copy(SEED3 / name, tmp_path / name)
    lines = (SEED3 / "labels_second.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "labels_second.jsonl").write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    results = judge_accuracy(tmp_path)
    assert results["n"] == 66
    assert results["judges"]["second labeller"]["n"] == 10
    assert results["judges"]["rule_on_second_subset"]["n"] == 10
    assert results["judges"]["rule"]["n"] == 66
