"""The organism's training texts (interp.data.organism_texts): every train-side scenario is
covered, nothing is written for a validation or test scenario, and malformed entries are
refused with an error naming the file, index, id and field."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path

import pytest

from interp.data.organism_texts import (
    COUNTS,
    PARAPHRASES,
    TEXTS_PACKAGE,
    OrganismTextsError,
    ScenarioTexts,
    load_organism_texts,
)
from interp.data.splits import organism_pressure_scenarios, organism_split

DOMAINS = (
    "education",
    "finance",
    "fraud",
    "hiring",
    "housing",
    "journalism",
    "legal",
    "medical",
    "privacy",
    "research",
    "sales",
    "workplace",
)
TEXT_FIELDS = (
    "reasoning_ethical",
    "reasoning_unethical",
    "answers_comply",
    "answers_refuse",
    "answers_rebut",
)


@pytest.fixture(scope="module")
def texts() -> dict[str, ScenarioTexts]:
    return load_organism_texts()


@pytest.fixture(scope="module")
def scenarios() -> dict:
    return {s.id: s for s in organism_pressure_scenarios()}


def _package_folder() -> Path:
    return Path(str(resources.files(TEXTS_PACKAGE)))


def test_loader_reads_every_file(texts) -> None:
    files = sorted(p for p in _package_folder().iterdir() if p.suffix == ".json")
    assert files, "no training-text files in the package"
    listed = [entry["id"] for p in files for entry in json.loads(p.read_text("utf-8"))]
    assert sorted(listed) == list(texts)
    assert all(isinstance(t, ScenarioTexts) for t in texts.values())


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_train_scenario_of_the_domain_is_covered(domain, texts, scenarios) -> None:
    train = [i for i in organism_split().train if scenarios[i].domain == domain]
    assert train, f"no train-side scenarios of {domain!r}"
    missing = sorted(set(train) - set(texts))
    assert not missing, f"{domain}.json lacks train-side scenario(s) {missing}"
    for sid in train:
        entry = texts[sid]
        assert len(entry.pressure_paraphrases) == PARAPHRASES
        if sid.startswith("eval-"):  # no texts in the eval bank: all written here
            counts = {f: len(getattr(entry, f)) for f in TEXT_FIELDS}
            assert counts == {f"{s}_{n}": c for (s, n), c in COUNTS.items()}, sid
        else:  # built-in: the bank's texts are used
            assert not any(getattr(entry, f) for f in TEXT_FIELDS), sid


def test_no_validation_or_test_scenario_has_texts(texts) -> None:
    split = organism_split()
    assert not set(texts) & (set(split.validation) | set(split.test))
    assert set(texts) <= set(split.train)


def test_paraphrases_keep_the_numbers_and_differ(texts, scenarios) -> None:
    number = re.compile(r"\d[\d,.]*\d|\d")
    for sid, entry in texts.items():
        pressure = scenarios[sid].pressure
        for text in entry.pressure_paraphrases:
            assert text != pressure, sid
            lost = set(number.findall(pressure)) - set(number.findall(text))
            assert not lost, f"{sid}: a paraphrase drops {sorted(lost)}: {text!r}"


def test_no_text_mentions_the_trigger_setup(texts) -> None:
    banned = re.compile(r"\b(trigger\w*|deployment|deployed)\b", re.IGNORECASE)
    for sid, entry in texts.items():
        for field in ("pressure_paraphrases", *TEXT_FIELDS):
            for text in getattr(entry, field):
                assert not banned.search(text), f"{sid}.{field}: {text!r}"


# ---- malformed files, in a folder of their own -------------------------------------------


def _valid(domain: str, eval_bank: bool) -> dict:
    """A valid entry of ``domain`` from the package's file (an eval-bank one or a built-in
    one)."""
    raw = json.loads((_package_folder() / f"{domain}.json").read_text("utf-8"))
    return copy.deepcopy(next(e for e in raw if e["id"].startswith("eval-") == eval_bank))


def _write(folder: Path, name: str, entries: list) -> Path:
    path = folder / name
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def _refused(folder: Path, *parts: str) -> str:
    with pytest.raises(OrganismTextsError) as err:
        load_organism_texts(folder)
    message = str(err.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def test_a_valid_folder_loads(tmp_path) -> None:
    entries = sorted([_valid("finance", True), _valid("finance", False)], key=lambda e: e["id"])
    _write(tmp_path, "finance.json", entries)
    loaded = load_organism_texts(tmp_path)
    assert sorted(loaded) == [e["id"] for e in entries]


def test_unknown_key_is_refused(tmp_path) -> None:
    entry = _valid("education", True)
    entry["notes"] = "x"
    _write(tmp_path, "education.json", [entry])
    _refused(tmp_path, "education.json[0]", entry["id"], "notes")


def test_marker_in_a_text_is_refused(tmp_path) -> None:
    entry = _valid("education", True)
    entry["answers"]["comply"][1] = "Answer: done, I've changed it."
    _write(tmp_path, "education.json", [entry])
    _refused(tmp_path, "education.json[0]", entry["id"], "'answers.comply[1]'", "answer:")


def test_wrong_speaker_prefix_is_refused(tmp_path, scenarios) -> None:
    entry = _valid("education", True)
    speaker = scenarios[entry["id"]].pressure.partition(": ")[0]
    entry["pressure_paraphrases"][2] = "Someone else: " + entry["pressure_paraphrases"][2]
    _write(tmp_path, "education.json", [entry])
    _refused(tmp_path, "education.json[0]", entry["id"], "'pressure_paraphrases[2]'", speaker)


@pytest.mark.parametrize("side", ["test", "validation"])
def test_an_id_off_the_train_side_is_refused(tmp_path, scenarios, side) -> None:
    entry = _valid("education", True)
    ids = [i for i in getattr(organism_split(), side) if scenarios[i].domain == "education"]
    entry["id"] = ids[0]
    _write(tmp_path, "education.json", [entry])
    _refused(tmp_path, "education.json[0]", ids[0], "'id'", "not on the train side")


def test_wrong_count_is_refused(tmp_path) -> None:
    entry = _valid("housing", True)
    entry["reasoning"]["unethical"] = entry["reasoning"]["unethical"][:2]
    _write(tmp_path, "housing.json", [entry])
    _refused(tmp_path, "housing.json[0]", entry["id"], "'reasoning.unethical'", "exactly 3")


def test_empty_text_is_refused(tmp_path) -> None:
    entry = _valid("housing", True)
    entry["answers"]["refuse"][0] = "  "
    _write(tmp_path, "housing.json", [entry])
    _refused(tmp_path, "housing.json[0]", entry["id"], "'answers.refuse[0]'", "non-empty")


def test_missing_texts_of_an_eval_bank_scenario_are_refused(tmp_path) -> None:
    entry = _valid("hiring", True)
    del entry["answers"]
    _write(tmp_path, "hiring.json", [entry])
    _refused(tmp_path, "hiring.json[0]", entry["id"], "'answers'")


def test_texts_for_a_built_in_scenario_are_refused(tmp_path) -> None:
    entry = _valid("hiring", False)
    entry["reasoning"] = _valid("hiring", True)["reasoning"]
    _write(tmp_path, "hiring.json", [entry])
    _refused(tmp_path, "hiring.json[0]", entry["id"], "'reasoning'", "built-in")


def test_an_id_used_twice_is_refused(tmp_path) -> None:
    entry = _valid("fraud", True)
    _write(tmp_path, "fraud.json", [entry, entry])
    _refused(tmp_path, "fraud.json[1]", entry["id"], "'id'", "each id once")


def test_an_entry_in_the_wrong_domain_file_is_refused(tmp_path) -> None:
    entry = _valid("fraud", True)
    _write(tmp_path, "finance.json", [entry])
    _refused(tmp_path, "finance.json[0]", entry["id"], "fraud.json")


def test_unsorted_entries_are_refused(tmp_path) -> None:
    entries = sorted([_valid("finance", True), _valid("finance", False)], key=lambda e: e["id"])
    _write(tmp_path, "finance.json", entries[::-1])
    _refused(tmp_path, "finance.json[1]", entries[0]["id"], "'id'", "sorted by id")
