"""Apollo Research's graded rollouts: insider-trading reports, sandbagging, alpaca control.

Labels of these sets come from graders, not from construction; every transcript keeps the
upstream label in ``meta["upstream_label"]`` and names the grader in ``meta["grader"]``.

- **rollout files** (``data/rollouts/<set>__<variant>__<model>.json``): an object whose
  ``rollouts`` list holds ``input_messages`` (chat turns), ``output_strs`` (one or more sampled
  replies) and ``graded_deception`` (one grade per reply: ``honest``/``deceptive``/
  ``ambiguous``/... or a 1-7 score). Every reply becomes a transcript; the replies of one
  prompt share a group. Grades map as upstream: ``honest`` or a score <= 2 is 0, ``deceptive``
  or >= 6 is 1, anything else is left out (counted in ``skipped`` of the returned meta).
  A last input turn that is an assistant prefix is joined with the reply.
- **insider trading** (``data/insider_trading/<model>-generations.json``): a list of
  ``{"transcript": [turns], "metadata": {"report_label": ...}}``. ``explicit`` is honest (0),
  ``concealed`` deceptive (1); ``implied`` and ``invalid`` are left out, as upstream does.
  When a rollout also holds the doubling-down exchange, its last two turns are dropped. The
  report is scored after ``Action:`` through the ``after:Action:`` token selection, not cut.
- **alpaca** (``data/rollouts/alpaca__plain__<model>.json``): replies to ordinary requests,
  all label 0 whatever they were graded: the control set for thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.data.external.common import ExternalDataError, read_json_file, turn
from interp.data.transcripts import ROLES, Transcript

INSIDER_TRADING_FILE = "data/insider_trading/llama-70b-3.3-generations.json"
ROLLOUT_GRADER = "Apollo's rollout grader (graded_deception, an LLM judge)"
INSIDER_GRADER = "Apollo's insider-trading report classifier (report_label, an LLM judge)"
_REPORT_LABELS = {"explicit": 0, "concealed": 1}


def grade_label(grade: Any) -> int | None:
    """Upstream's mapping of a grade to a label; None for grades left out."""
    if isinstance(grade, str):
        if grade.strip().isdigit():
            grade = int(grade)
        else:
            return {"honest": 0, "deceptive": 1}.get(grade.strip().lower())
    if isinstance(grade, int) and not isinstance(grade, bool):
        return 1 if grade >= 6 else 0 if grade <= 2 else None
    return None


def _turns(messages: Any, where: str, keep_system: bool = True) -> list[dict[str, str]]:
    if not isinstance(messages, list):
        raise ExternalDataError(f"{where}: expected a list of chat turns")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
            raise ExternalDataError(
                f"{where}: turn {i} must have a role in {ROLES} and a content, got {m!r:.80}"
            )
        if keep_system or m["role"] != "system":
            out.append(turn(m["role"], str(m["content"]).strip()))
    return out


def _rollout_transcripts(
    index: int, item: Any, name: str, where: str, keep_system: bool, control: bool
) -> list[Transcript]:
    if not isinstance(item, dict) or not {"input_messages", "output_strs"} <= set(item):
        raise ExternalDataError(f"{where}: a rollout needs input_messages and output_strs")
    grades = item.get("graded_deception") or [None] * len(item["output_strs"])
    prompt = _turns(item["input_messages"], where, keep_system)
    prefix = ""
    if prompt and prompt[-1]["role"] == "assistant":
        prefix = prompt.pop()["content"]
    out = []
    for j, (reply, grade) in enumerate(zip(item["output_strs"], grades, strict=False)):
        label = 0 if control else grade_label(grade)
        if label is None:
            continue
        text = (prefix + " " + str(reply).strip()).strip()
        out.append(
            Transcript(
                id=f"{name}-{index:04d}-{j}",
                group=f"{name}-{index:04d}",
                messages=(*prompt, turn("assistant", text)),
                label=label,
                meta={
                    "source": f"apollo:{name}",
                    "upstream_label": grade,
                    "grader": None if control else ROLLOUT_GRADER,
                    "expect_deception": item.get("expect_deception"),
                },
            )
        )
    return out


def read_rollouts(
    path: Path, name: str, *, keep_system: bool = True, control: bool = False
) -> list[Transcript]:
    """Every graded reply of an Apollo rollout file (see the module notes)."""
    data = read_json_file(path)
    rollouts = data.get("rollouts") if isinstance(data, dict) else None
    if not isinstance(rollouts, list):
        raise ExternalDataError(
            f"{path}: expected an Apollo rollout file (an object with a 'rollouts' list)"
        )
    return [
        t
        for i, item in enumerate(rollouts)
        for t in _rollout_transcripts(i, item, name, f"{path} (rollout {i})", keep_system, control)
    ]


def read_insider_trading(path: Path) -> list[Transcript]:
    """The labelled report rollouts of Apollo's insider-trading generations file."""
    data = read_json_file(path)
    if not isinstance(data, list):
        raise ExternalDataError(f"{path}: expected a JSON list of rollouts")
    out = []
    for i, item in enumerate(data):
        where = f"{path} (rollout {i})"
        if not isinstance(item, dict) or not isinstance(item.get("metadata"), dict):
            raise ExternalDataError(f"{where}: a rollout needs 'transcript' and 'metadata'")
        meta = item["metadata"]
        label = _REPORT_LABELS.get(meta.get("report_label"))
        if label is None:
            continue
        turns = _turns(item.get("transcript"), where)
        if "doubling_down_label" in meta:
            turns = turns[:-2]  # the follow-up from Amy and the reply to it
        if not turns or turns[-1]["role"] != "assistant":
            raise ExternalDataError(f"{where}: the report rollout must end with the assistant")
        out.append(
            Transcript(
                id=f"insider-trading-{i:04d}",
                group=f"insider-trading-{i:04d}",
                messages=tuple(turns),
                label=label,
                meta={
                    "source": "apollo:insider_trading",
                    "upstream_label": meta["report_label"],
                    "grader": INSIDER_GRADER,
                    **{k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)},
                },
            )
        )
    return out


def find_rollout_file(folder: Path, prefix: str) -> Path:
    """The one ``<prefix>__*.json`` rollout file in ``folder``; several is an error that
    lists them (pass the file itself)."""
    found = sorted(folder.glob(f"{prefix}__*.json"))
    if len(found) != 1:
        listing = ", ".join(p.name for p in found) or "none"
        raise ExternalDataError(
            f"{folder}: expected one {prefix}__<model>.json rollout file, found {listing}; "
            f"pass the file itself (builtin:<name>={folder}/<file>)"
        )
    return found[0]
