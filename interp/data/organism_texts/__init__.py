"""Training texts for the organism's train-side scenarios: prompt paraphrases, and the
reasoning and answers that the evaluation-only bank's scenarios lack.

The organism recipe needs many distinct scenarios, each seen under several wordings of its
request. The scenarios are the train side of the frozen split
(:func:`interp.data.splits.organism_split`): built-in ones (:mod:`interp.data.scenarios`,
which already carry written reasoning and answers) and ones of the evaluation bank (which
carry only a system prompt, a pressure turn, the act, the harm and judge criteria). Each
JSON file of this package, ``<domain>.json``, is a list of objects sorted by ``id``:

- every scenario: ``id`` and ``pressure_paraphrases`` (:data:`PARAPHRASES` rewordings of the
  pressure turn, each starting with the same ``<Speaker>: `` prefix, keeping its request,
  facts, names and numbers);
- an eval-bank scenario (``eval-<domain>-...``) also: ``reasoning`` (``ethical``,
  ``unethical``) and ``answers`` (``comply``, ``refuse``, ``rebut``), with :data:`COUNTS`
  texts each, written in the assistant role of its system prompt. A built-in scenario has no
  ``reasoning`` or ``answers`` here: its texts are the bank's.

No text contains the reply-format markers ``Reasoning:`` or ``Answer:`` (the dataset builder
adds them). :func:`load_organism_texts` reads and validates every file and refuses any id
that is not on the train side of the split: nothing is written for a validation or test
scenario.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TEXTS_PACKAGE = "interp.data.organism_texts"

#: Rewordings of the pressure turn per scenario.
PARAPHRASES = 3
#: Texts of each kind per eval-bank scenario (section, name) -> count.
COUNTS = {
    ("reasoning", "ethical"): 3,
    ("reasoning", "unethical"): 3,
    ("answers", "comply"): 3,
    ("answers", "refuse"): 2,
    ("answers", "rebut"): 2,
}
#: The keys an entry may have; ``reasoning`` and ``answers`` only for eval-bank scenarios.
KEYS = ("id", "pressure_paraphrases", "reasoning", "answers")
#: Reply-format markers that no text may contain (checked case-insensitively).
MARKERS = ("reasoning:", "answer:")


class OrganismTextsError(ValueError):
    """A training-text file breaks the format, or names a scenario off the train side."""


@dataclass(frozen=True)
class ScenarioTexts:
    """The training texts written for one train-side scenario. The last five are empty for a
    built-in scenario (its texts are in the bank)."""

    id: str
    pressure_paraphrases: tuple[str, ...]
    reasoning_ethical: tuple[str, ...] = ()
    reasoning_unethical: tuple[str, ...] = ()
    answers_comply: tuple[str, ...] = ()
    answers_refuse: tuple[str, ...] = ()
    answers_rebut: tuple[str, ...] = ()


def _strings(values: object, count: int, where: str, field: str) -> tuple[str, ...]:
    """``count`` non-empty, distinct, marker-free strings, or an error naming ``where`` (file,
    index and id) and ``field``."""
    if not isinstance(values, list) or len(values) != count:
        raise OrganismTextsError(
            f"{where}: field '{field}' must be a list of exactly {count} strings"
        )
    for j, text in enumerate(values):
        if not isinstance(text, str) or not text.strip():
            raise OrganismTextsError(f"{where}: field '{field}[{j}]' must be a non-empty string")
        marker = next((m for m in MARKERS if m in text.lower()), None)
        if marker:
            raise OrganismTextsError(
                f"{where}: field '{field}[{j}]' contains the marker {marker!r}"
            )
    texts = tuple(v.strip() for v in values)
    if len(set(texts)) != len(texts):
        raise OrganismTextsError(f"{where}: field '{field}': texts repeat")
    return texts


def _section(raw: Mapping, section: str, where: str) -> dict[str, tuple[str, ...]]:
    """The texts of ``reasoning`` or ``answers``, exactly the names of :data:`COUNTS`."""
    names = [name for sec, name in COUNTS if sec == section]
    value = raw.get(section)
    if not isinstance(value, dict) or set(value) != set(names):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise OrganismTextsError(f"{where}: field '{section}' must have exactly {names}, got {got}")
    return {
        f"{section}_{name}": _strings(
            value[name], COUNTS[(section, name)], where, f"{section}.{name}"
        )
        for name in names
    }


def _paraphrases(values: object, pressure: str, where: str) -> tuple[str, ...]:
    """The rewordings of ``pressure``: each with its speaker prefix, none the same as it."""
    field = "pressure_paraphrases"
    texts = _strings(values, PARAPHRASES, where, field)
    speaker, sep, _ = pressure.partition(": ")
    prefix = f"{speaker}: " if sep else ""
    for j, text in enumerate(texts):
        if not text.startswith(prefix) or not text[len(prefix) :].strip():
            raise OrganismTextsError(
                f"{where}: field '{field}[{j}]' must start with the pressure turn's speaker "
                f"prefix {prefix!r}"
            )
        if text == pressure:
            raise OrganismTextsError(
                f"{where}: field '{field}[{j}]' repeats the pressure turn unchanged"
            )
    return texts


def _entry(raw: object, scenarios: Mapping, train: frozenset, where: str) -> ScenarioTexts:
    """One validated entry (``where``: file and index; ``scenarios``: pressure scenarios by
    id; ``train``: the train-side ids)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise OrganismTextsError(f"{where}: expected an object with a string 'id'")
    sid = raw["id"]
    where = f"{where} (id {sid!r})"
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise OrganismTextsError(f"{where}: unknown field(s) {unknown}; allowed {list(KEYS)}")
    scenario = scenarios.get(sid)
    if scenario is None:
        raise OrganismTextsError(f"{where}: field 'id': no pressure scenario has this id")
    if sid not in train:
        raise OrganismTextsError(
            f"{where}: field 'id': the scenario is not on the train side of the organism "
            "split (validation and test scenarios get no training texts)"
        )
    paraphrases = _paraphrases(raw.get("pressure_paraphrases"), scenario.pressure, where)
    if scenario.answers_comply:  # a built-in scenario: its texts are in the bank
        extra = sorted(set(raw) & {"reasoning", "answers"})
        if extra:
            raise OrganismTextsError(
                f"{where}: field(s) {extra} not allowed: a built-in scenario's texts are in "
                "the scenario bank"
            )
        return ScenarioTexts(id=sid, pressure_paraphrases=paraphrases)
    texts = {**_section(raw, "reasoning", where), **_section(raw, "answers", where)}
    return ScenarioTexts(id=sid, pressure_paraphrases=paraphrases, **texts)


def _read_file(path: Path, scenarios: Mapping, train: frozenset) -> list[ScenarioTexts]:
    """The validated entries of one ``<domain>.json`` file, in id order."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise OrganismTextsError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err
    if not isinstance(raw, list):
        raise OrganismTextsError(f"{path}: expected a JSON list of entries")
    entries = [_entry(item, scenarios, train, f"{path}[{i}]") for i, item in enumerate(raw)]
    for i, entry in enumerate(entries):
        domain = scenarios[entry.id].domain
        if domain != path.stem:
            raise OrganismTextsError(
                f"{path}[{i}] (id {entry.id!r}): field 'id': a {domain!r} scenario belongs in "
                f"{domain}.json"
            )
    for i in range(1, len(entries)):
        if entries[i].id <= entries[i - 1].id:
            raise OrganismTextsError(
                f"{path}[{i}] (id {entries[i].id!r}): field 'id': entries must be sorted by "
                f"id, each id once (follows {entries[i - 1].id!r})"
            )
    return entries


def load_organism_texts(folder: str | Path | None = None) -> dict[str, ScenarioTexts]:
    """Every entry of the ``*.json`` files of this package (or of ``folder``), validated, by
    id. Raises :class:`OrganismTextsError` naming the file, index, id and field on a format
    error, an id used twice, or an id not on the train side of the organism split."""
    from interp.data.splits import organism_pressure_scenarios, organism_split

    root = Path(str(resources.files(TEXTS_PACKAGE))) if folder is None else Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix == ".json")
    scenarios = {s.id: s for s in organism_pressure_scenarios()}
    train = frozenset(organism_split().train)
    texts: dict[str, ScenarioTexts] = {}
    where: dict[str, Path] = {}
    for path in files:
        for i, entry in enumerate(_read_file(path, scenarios, train)):
            if entry.id in texts:
                raise OrganismTextsError(
                    f"{path}[{i}] (id {entry.id!r}): field 'id': also in {where[entry.id]}"
                )
            texts[entry.id], where[entry.id] = entry, path
    return dict(sorted(texts.items()))
