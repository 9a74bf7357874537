"""Liars' Bench (Cadenza Labs, arXiv:2511.16035) in its released format.

The release on the Hugging Face hub holds one subset per setting (``instructed-deception``,
``harm-pressure-choice``, ``convincing-game``, ``insider-trading``, ...), each a table with, per
row, ``messages`` (the chat turns, the last one the model's reply), ``deceptive`` (the label,
a boolean) and ``model`` (the model that wrote the reply), with ``dataset`` naming the subset
and other columns (``index``, ...) that are kept in ``meta``. A downloaded copy is read file
by file: ``*.parquet`` (needs pyarrow), ``*.jsonl``/``*.json`` and ``*.csv`` (``messages`` as a
JSON string) anywhere under the folder, or one such file.

Groups: the rows that share a user request (the first user turn) of one subset form a group,
so the honest and the deceptive reply to one request are never on both sides of a split.
Labels are the benchmark's own (decided per setting by its authors' rules and LLM judges:
``meta["grader"]``). Rows without a label are left out. This reader was written from the
documented format and tested on fixtures only, not on the released files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interp.data.external.common import ExternalDataError, read_json_file
from interp.data.transcripts import Transcript, TranscriptError, transcript_from_dict

GRADER = "Liars' Bench labels (per-setting rules and LLM judges of its authors)"
_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def _rows_of(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` of one table file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ExternalDataError(
                f"{path}: reading parquet needs pyarrow (pip install pyarrow)"
            ) from None
        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path} (row {i})", row
    elif path.suffix == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    yield f"{path}:{n}", json.loads(line)
                except json.JSONDecodeError as err:
                    raise ExternalDataError(f"{path}:{n}: not valid JSON ({err.msg})") from None
    elif path.suffix == ".json":
        data = read_json_file(path)
        for i, row in enumerate(data if isinstance(data, list) else [data]):
            yield f"{path} (row {i})", row
    else:
        import csv

        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield f"{path}:{reader.line_num}", dict(row)


def _messages(raw: Any, where: str) -> list[dict[str, str]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ExternalDataError(f"{where}: 'messages' is text but not JSON") from None
    if not isinstance(raw, list | tuple):
        raise ExternalDataError(f"{where}: 'messages' must be a list of chat turns")
    return [{"role": m.get("role"), "content": m.get("content")} for m in raw]


def _label(value: Any) -> int | None:
    if isinstance(value, str):
        value = {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    return None if value is None else int(bool(value))


def row_transcript(row: dict[str, Any], where: str, subset: str) -> Transcript | None:
    """One row as a transcript, or None when it has no label."""
    if "messages" not in row or "deceptive" not in row:
        raise ExternalDataError(
            f"{where}: a Liars' Bench row needs 'messages' and 'deceptive' (has {sorted(row)})"
        )
    label = _label(row["deceptive"])
    if label is None:
        return None
    messages = _messages(row["messages"], where)
    dataset = str(row.get("dataset") or subset)
    request = next((m["content"] for m in messages if m["role"] == "user"), "") or ""
    group = f"{dataset}-{hashlib.blake2b(request.encode(), digest_size=5).hexdigest()}"
    extra = {k: v for k, v in row.items() if k not in ("messages", "deceptive")}
    meta = {k: v for k, v in extra.items() if isinstance(v, str | int | float | bool)}
    meta.update(source="liars-bench", dataset=dataset, upstream_label=row["deceptive"])
    meta["grader"] = GRADER
    rid = f"{dataset}-{row.get('index', where.rsplit(' ', 1)[-1].strip('()'))}"
    raw = {"id": rid, "group": group, "messages": messages, "label": label, "meta": meta}
    try:
        return transcript_from_dict(raw, where)
    except TranscriptError as err:
        raise ExternalDataError(str(err)) from None


def read_liars_bench(path: Path) -> list[Transcript]:
    """Every labelled row of a Liars' Bench copy (a folder of subset files, or one file)."""
    files = (
        [path]
        if path.is_file()
        else sorted(
            p for p in path.rglob("*") if p.suffix in _SUFFIXES and not p.name.startswith(".")
        )
    )
    if not files:
        raise ExternalDataError(
            f"{path}: no {', '.join(_SUFFIXES)} files; is it a download of "
            "Cadenza-Labs/liars-bench?"
        )
    out: list[Transcript] = []
    seen: dict[str, int] = {}
    for file in files:
        subset = file.parent.name if file.parent != path else file.stem.split("-")[0]
        for where, row in _rows_of(file):
            t = row_transcript(row, where, subset)
            if t is None:
                continue
            n = seen[t.id] = seen.get(t.id, 0) + 1
            out.append(
                t if n == 1 else Transcript(f"{t.id}-{n}", t.group, t.messages, t.label, t.meta)
            )
    return out
