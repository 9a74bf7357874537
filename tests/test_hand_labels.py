"""The hand-labelled reference set: complete, valid, and scored by experiments/judge_accuracy."""

import importlib.util
from pathlib import Path

from interp.judging import import_labels
from interp.scenarios import load_bank
from interp.transcripts import load_transcripts

REFERENCE = Path(__file__).parent / "data" / "hand_labelled"


def test_reference_set_is_complete_and_valid():
    replies = load_transcripts(REFERENCE / "replies.jsonl")
    labels = import_labels(REFERENCE / "labels.jsonl")
    assert len(replies) >= 60
    assert {t.id for t in replies} == set(labels)
    bank = {s.id for s in load_bank()}
    assert all(t.group in bank and t.meta.get("generated") for t in replies)


def test_judge_accuracy_script_scores_the_rule_judge():
    path = Path(__file__).parent.parent / "experiments" / "judge_accuracy.py"
    spec = importlib.util.spec_from_file_location("judge_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.judge_accuracy(REFERENCE)
    fields = results["judges"]["rule"]["fields"]
    assert results["n"] >= 60
    assert set(fields) == {"reasoning_present", "reasoning_stance", "answer_undesired", "rbd"}
    assert all(0.0 <= f["accuracy"] <= 1.0 for f in fields.values())
