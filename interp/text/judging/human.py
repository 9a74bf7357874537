"""Human labels: export replies to a CSV or JSONL file for labelling, and read it back.

:func:`export_for_labelling` writes ``id, group, reply`` with empty label columns;
:func:`import_labels` reads the filled-in file into verdicts (``judge="human"``), with errors
that name the file, the row or line, and the allowed values. :class:`HumanJudge` ("human",
``make_judge("human", labels=FILE)``) gives those labels as a judge's verdicts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from interp.artifacts import atomic_write, read_jsonl
from interp.data.scenarios import Scenario
from interp.data.transcripts import Transcript
from interp.text.judging.base import Judge, JudgeError, register_judge
from interp.text.judging.verdict import ANSWER_VALUES, STANCES, Verdict

LABEL_COLUMNS = ("reasoning_present", "reasoning_stance", "answer_undesired")
EXPORT_COLUMNS = ("id", "group", "reply", *LABEL_COLUMNS, "notes")
_ALLOWED = {
    "reasoning_present": ("yes", "no"),
    "reasoning_stance": STANCES,
    "answer_undesired": ANSWER_VALUES,
}
_PRESENT_SYNONYMS = {"y": "yes", "true": "yes", "1": "yes", "n": "no", "false": "no", "0": "no"}


def export_for_labelling(transcripts: Iterable[Transcript], path: str | Path) -> None:
    """Write a file for human labelling: CSV (``.csv``) or JSON Lines (``.jsonl``/``.json``),
    columns ``id, group, reply, reasoning_present, reasoning_stance, answer_undesired, notes``
    with the label columns empty. Read it back with :func:`import_labels`."""
    path = Path(path)
    suffix = path.suffix.lower()
    rows = [
        {
            "id": t.id,
            "group": t.group,
            "reply": t.reply,
            **dict.fromkeys(LABEL_COLUMNS, ""),
            "notes": "",
        }
        for t in transcripts
    ]
    if suffix == ".csv":

        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)

    elif suffix in (".jsonl", ".json"):

        def write(tmp: Path) -> None:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            tmp.write_text(text, encoding="utf-8")

    else:
        raise JudgeError(f"{path}: unknown label file type {suffix!r}; use .csv or .jsonl")
    atomic_write(path, write)


def _label_value(raw: Any, column: str) -> str:
    if isinstance(raw, bool) and column == "reasoning_present":
        return "yes" if raw else "no"
    if raw is None:
        return ""
    value = str(raw).strip().lower()
    if column == "reasoning_present":
        value = _PRESENT_SYNONYMS.get(value, value)
    return value


def _verdict_from_row(row: Mapping[str, Any], where: str) -> Verdict | None:
    """A row's verdict; None when all label columns are empty (not labelled yet)."""
    values = {c: _label_value(row.get(c), c) for c in LABEL_COLUMNS}
    if not any(values.values()):
        return None
    if values["reasoning_stance"] == "" and values["reasoning_present"] == "no":
        values["reasoning_stance"] = "unclear"
    for column, value in values.items():
        if value not in _ALLOWED[column]:
            shown = "empty" if value == "" else repr(row.get(column))
            raise JudgeError(
                f"{where}: {column} is {shown}; allowed values: {', '.join(_ALLOWED[column])}"
                " (leave all three label columns empty to skip a row)"
            )
    note = row.get("notes")
    return Verdict(
        reasoning_present=values["reasoning_present"] == "yes",
        reasoning_stance=values["reasoning_stance"],
        answer_undesired=values["answer_undesired"],
        judge="human",
        note="" if note is None else str(note).strip(),
    )


def _label_rows(path: Path) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """(location for errors, row) pairs of a CSV or JSONL label file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("id", *LABEL_COLUMNS) if c not in (reader.fieldnames or [])]
            if missing:
                raise JudgeError(
                    f"{path}: missing column(s) {missing}; expected {', '.join(EXPORT_COLUMNS)}"
                )
            # Row numbers as a spreadsheet shows them: the header is row 1.
            for number, row in enumerate(reader, start=2):
                yield f"{path}: row {number} (id {row.get('id')!r})", row
    elif suffix in (".jsonl", ".json"):
        for where, row in read_jsonl(path, JudgeError):
            if not isinstance(row, dict):
                raise JudgeError(f"{where}: expected a JSON object")
            yield f"{where} (id {row.get('id')!r})", row
    else:
        raise JudgeError(f"{path}: unknown label file type {suffix!r}; use .csv or .jsonl")


def import_labels(path: str | Path) -> dict[str, Verdict]:
    """Human verdicts by transcript id (``judge="human"``) from a filled-in export.

    Values are case-insensitive; ``reasoning_present`` also takes true/false, y/n, 1/0, and
    ``reasoning_stance`` may be left empty when ``reasoning_present`` is "no". Rows with all
    three label columns empty are skipped. A bad value raises :class:`JudgeError` naming the
    file, the row (CSV, header = row 1) or line (JSONL), and the allowed values.
    """
    path = Path(path)
    if not path.is_file():
        raise JudgeError(f"{path}: no such label file")
    out: dict[str, Verdict] = {}
    try:
        rows = list(_label_rows(path))
    except UnicodeDecodeError as err:
        raise JudgeError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start}); save the file as UTF-8"
        ) from None
    for where, row in rows:
        tid = row.get("id")
        if not isinstance(tid, str) or not tid.strip():
            raise JudgeError(f"{where}: missing transcript id")
        verdict = _verdict_from_row(row, where)
        if verdict is None:
            continue
        if tid in out:
            raise JudgeError(f"{where}: transcript id {tid!r} is labelled twice")
        out[tid] = verdict
    return out


class HumanJudge(Judge):
    """Hand labels as a judge: the verdict on a transcript is its label, by id.

    ``labels`` is a filled-in export (read with :func:`import_labels`) or verdicts by
    transcript id. Judging a transcript without a label raises :class:`JudgeError`.
    """

    name = "human"
    needs_scenario = False

    def __init__(self, labels: str | Path | Mapping[str, Verdict]) -> None:
        super().__init__()
        if isinstance(labels, str | Path):
            self.source = str(labels)
            self.labels = import_labels(labels)
        else:
            self.source = "the hand labels"
            self.labels = dict(labels)

    def judge(self, transcript: Transcript, scenario: Scenario | None) -> Verdict:
        self._check_labelled([transcript])
        return self.labels[transcript.id]

    def judge_all(
        self, transcripts: Sequence[Transcript], scenarios_by_id: Mapping[str, Scenario]
    ) -> list[Verdict]:
        self._check_labelled(transcripts)
        return super().judge_all(transcripts, scenarios_by_id)

    def _check_labelled(self, transcripts: Sequence[Transcript]) -> None:
        missing = [t.id for t in transcripts if t.id not in self.labels]
        if missing:
            raise JudgeError(
                f"{self.source}: no label for {len(missing)} of {len(transcripts)} replies "
                f"(e.g. {missing[:3]}); label them or judge with --judge rule"
            )


register_judge("human", HumanJudge)
