from collections import Counter

import pytest

from interp.data.datasets import DatasetError, build_benign, build_consistency, load_dataset
from interp.data.scenarios import ScenarioError, load_bank, load_scenario_file


def test_bank_size_and_coverage():
    bank = load_bank()
    pressure = [s for s in bank if s.kind == "pressure"]
    assert len(pressure) >= 40
    assert len({s.domain for s in pressure}) >= 6
    assert any(s.kind == "benign" for s in bank)
    for s in pressure:
        assert len(s.reasoning_ethical) >= 2 and len(s.reasoning_unethical) >= 2
        assert len(s.answers_comply) >= 2 and len(s.answers_refuse) >= 2
        assert len(s.answers_rebut) >= 2


def test_texts_are_written_per_scenario():
    """No reasoning or answer text is reused verbatim across scenarios (a template would be)."""
    owners: dict[str, set[str]] = {}
    for s in load_bank():
        for text in (
            *s.reasoning_ethical,
            *s.reasoning_unethical,
            *s.answers_comply,
            *s.answers_rebut,
        ):
            owners.setdefault(text, set()).add(s.id)
    shared = {t: ids for t, ids in owners.items() if len(ids) > 1}
    assert not shared


def test_consistency_labels_are_the_pairing_not_any_text():
    data = build_consistency()
    assert len({t.id for t in data}) == len(data)
    assert sum(t.label for t in data) * 2 == len(data)
    counts = Counter()
    for t in data:
        reasoning, answer = t.reply.removeprefix("Reasoning: ").split("\nAnswer: ")
        assert t.label == int((t.meta["reasoning"] == "ethical") == (t.meta["answer"] == "comply"))
        counts[(reasoning, t.label)] += 1
        counts[(answer, t.label)] += 1
    texts = {text for text, _ in counts}
    assert all(counts[(text, 0)] == counts[(text, 1)] for text in texts)
    assert {t.meta["strategy"] for t in data} == {"comply", "refusal", "rebuttal"}


def test_full_dataset_pairs_everything():
    bank = load_bank()
    full = build_consistency(bank, per_cell=None)
    expected = sum(
        (len(s.reasoning_ethical) + len(s.reasoning_unethical))
        * (len(s.answers_comply) + len(s.answers_refuse) + len(s.answers_rebut))
        for s in bank
        if s.kind == "pressure"
    )
    assert len(full) == expected


def test_benign_is_all_consistent():
    benign = build_benign()
    assert benign and all(t.label == 0 for t in benign)


def test_unknown_dataset_lists_builtins():
    with pytest.raises(DatasetError, match="builtin:consistency"):
        load_dataset("builtin:nope")
    with pytest.raises(DatasetError, match="neither a built-in name"):
        load_dataset("missing.jsonl")


def test_bad_scenario_file_is_reported(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        '[{"id": "a", "domain": "d", "kind": "pressure", "system": "s", "pressure": "p"}]'
    )
    with pytest.raises(ScenarioError, match=r"bad.json\[0\] \(scenario 'a'\): too few texts"):
        load_scenario_file(path)
