"""Agreement between two sets of verdicts (e.g. a judge against human labels).

:func:`agreement` gives Cohen's kappa (:func:`cohen_kappa`) and accuracy per verdict field,
and lists the disagreements; :func:`confusion` counts value pairs of one field
(:func:`format_confusion` prints them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from interp.text.judging.base import JudgeError
from interp.text.judging.verdict import ANSWER_VALUES, FIELDS, STANCES, Verdict


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels: (p_o - p_e) / (1 - p_e).

    Perfect agreement gives 1.0 (also when both raters use a single category, where the
    formula would divide by zero).
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} labels against {len(b)}")
    if not a:
        raise ValueError("cohen_kappa: no labels")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    if observed == 1.0:
        return 1.0
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    return (observed - expected) / (1.0 - expected)


_FIELD_VALUES = {
    "reasoning_present": ("yes", "no"),
    "reasoning_stance": STANCES,
    "answer_undesired": ANSWER_VALUES,
    "rbd": ("yes", "no"),
}


def _field_value(verdict: Verdict, name: str) -> str:
    value = getattr(verdict, name)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def agreement(
    verdicts_a: Mapping[str, Verdict],
    verdicts_b: Mapping[str, Verdict],
    ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Compare two sets of verdicts on ``ids`` (default: the ids both have).

    Returns ``{"n": ..., "fields": {field: {"kappa": ..., "accuracy": ...}},
    "disagreements": [{"id", "field", "a", "b"}, ...]}`` for the fields reasoning_present,
    reasoning_stance, answer_undesired and rbd (booleans compared as "yes"/"no").
    """
    ids = sorted(set(verdicts_a) & set(verdicts_b)) if ids is None else list(ids)
    missing = [i for i in ids if i not in verdicts_a or i not in verdicts_b]
    if missing:
        raise JudgeError(f"no verdict in both sets for id(s) {missing[:5]}")
    if not ids:
        raise JudgeError("agreement: no ids to compare")
    fields: dict[str, dict[str, float]] = {}
    disagreements: list[dict[str, str]] = []
    for name in FIELDS:
        a = [_field_value(verdicts_a[i], name) for i in ids]
        b = [_field_value(verdicts_b[i], name) for i in ids]
        fields[name] = {
            "kappa": cohen_kappa(a, b),
            "accuracy": sum(x == y for x, y in zip(a, b, strict=True)) / len(ids),
        }
        disagreements.extend(
            {"id": i, "field": name, "a": x, "b": y}
            for i, x, y in zip(ids, a, b, strict=True)
            if x != y
        )
    return {"n": len(ids), "fields": fields, "disagreements": disagreements}


def confusion(
    verdicts_a: Mapping[str, Verdict],
    verdicts_b: Mapping[str, Verdict],
    field: str = "answer_undesired",
    ids: Iterable[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Counts of (a's value, b's value) for one field: ``table[a_value][b_value]``.

    Rows and columns are the field's values (:data:`ANSWER_VALUES`, :data:`STANCES`, or
    "yes"/"no" for the boolean fields), every cell present (0 when empty).
    """
    if field not in FIELDS:
        raise JudgeError(f"unknown verdict field {field!r}; choose one of {', '.join(FIELDS)}")
    ids = sorted(set(verdicts_a) & set(verdicts_b)) if ids is None else list(ids)
    values = _FIELD_VALUES[field]
    table = {x: dict.fromkeys(values, 0) for x in values}
    for i in ids:
        table[_field_value(verdicts_a[i], field)][_field_value(verdicts_b[i], field)] += 1
    return table


def format_confusion(table: Mapping[str, Mapping[str, int]], a: str, b: str) -> str:
    """A confusion table as text: rows are ``a``'s values, columns ``b``'s."""
    values = list(table)
    width = max(len(v) for v in values) + 2
    corner = f"{a} \\ {b}"
    head = f"{corner:<{max(width, len(corner)) + 1}}" + "".join(f"{v:>{width}}" for v in values)
    rows = [head]
    for x in values:
        cells = "".join(f"{table[x][y]:>{width}}" for y in values)
        rows.append(f"{x:<{max(width, len(corner)) + 1}}{cells}")
    return "\n".join(rows)
