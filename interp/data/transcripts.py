"""The transcript format (a public contract, see the design notes) and JSONL I/O.

One transcript per line::

    {"id": "...", "group": "scenario id", "messages": [{"role": ..., "content": ...}, ...],
     "label": 1, "meta": {"reasoning": "ethical", "answer": "comply", "domain": "sales"}}

The last message is the assistant reply that probes read. ``label`` is 1 when the answer
diverges from the reasoning, 0 when it follows it, and may be absent for data that is only
scored. Every line is validated on load; an error names the file, the line and the fix.

``group`` (the scenario) is required: train/test splits and cross-validation keep a group on
one side, so a missing group would silently make every line its own scenario. Data that is
only scored (``--eval-dataset``, :func:`interp.probe.score_transcripts`) is never split, so
there the id may stand in: load it with ``require_group=False``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.artifacts import atomic_write, read_jsonl

ROLES = ("system", "user", "assistant")


class TranscriptError(ValueError):
    """A transcript that does not follow the format; the message names file and line."""


@dataclass(frozen=True)
class Transcript:
    id: str
    group: str
    messages: tuple[dict[str, str], ...]
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def reply(self) -> str:
        """The content of the last message (the reply a probe reads)."""
        return self.messages[-1]["content"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "group": self.group, "messages": list(self.messages)}
        if self.label is not None:
            out["label"] = self.label
        out["meta"] = self.meta
        return out


def transcript_from_dict(
    raw: Any, where: str = "transcript", *, require_group: bool = True
) -> Transcript:
    """Validate one decoded JSON object; ``where`` prefixes error messages (``file:line``).

    A missing ``group`` is an error unless ``require_group=False`` (data that is only
    scored, never split), where the id stands in for it.
    """
    if not isinstance(raw, dict):
        raise TranscriptError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for key in ("id", "messages"):
        if key not in raw:
            raise TranscriptError(f"{where}: missing required field '{key}'")
    if not isinstance(raw["id"], str) or not raw["id"]:
        raise TranscriptError(f"{where}: 'id' must be a non-empty string")
    if require_group and "group" not in raw:
        raise TranscriptError(
            f"{where}: missing required field 'group' (the scenario id: splits keep each "
            "scenario on one side); add it to every line, or score the file with "
            "--eval-dataset, where the id stands in"
        )
    group = raw.get("group", raw["id"])
    if not isinstance(group, str) or not group:
        raise TranscriptError(f"{where}: 'group' must be a non-empty string (the scenario id)")
    messages = raw["messages"]
    if not isinstance(messages, list) or not messages:
        raise TranscriptError(f"{where}: 'messages' must be a non-empty list of chat turns")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or set(msg) - {"role", "content"} or "content" not in msg:
            raise TranscriptError(
                f"{where}: messages[{i}] must be an object with 'role' and 'content' only"
            )
        if msg.get("role") not in ROLES:
            raise TranscriptError(
                f"{where}: messages[{i}] has role {msg.get('role')!r}; use one of {ROLES}"
            )
        if not isinstance(msg["content"], str):
            raise TranscriptError(f"{where}: messages[{i}].content must be a string")
    if messages[-1]["role"] != "assistant":
        raise TranscriptError(
            f"{where}: the last message must be the assistant reply to read, "
            f"got role {messages[-1]['role']!r}"
        )
    label = raw.get("label")
    if label is not None and (isinstance(label, bool) or label not in (0, 1)):
        raise TranscriptError(f"{where}: 'label' must be 0, 1 or absent, got {label!r}")
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise TranscriptError(f"{where}: 'meta' must be an object")
    return Transcript(
        id=raw["id"],
        group=group,
        messages=tuple({"role": m["role"], "content": m["content"]} for m in messages),
        label=label,
        meta=meta,
    )


def load_transcripts(path: str | Path, *, require_group: bool = True) -> list[Transcript]:
    """Read a JSONL file of transcripts, validating every line (blank lines are skipped).

    ``require_group=False`` is for data that is only scored: a line without ``group`` then
    takes its id as its scenario (see the module notes).
    """
    path = Path(path)
    if path.is_dir():
        raise TranscriptError(
            f"{path}: is a folder; pass a JSON Lines transcript file (e.g. one of "
            f"{sorted(p.name for p in path.glob('*.jsonl'))[:3] or 'its .jsonl files'})"
        )
    if not path.is_file():
        raise TranscriptError(f"{path}: no such file (expected a JSON Lines transcript file)")
    try:
        transcripts = [
            transcript_from_dict(raw, where, require_group=require_group)
            for where, raw in read_jsonl(path, TranscriptError)
        ]
    except UnicodeDecodeError as err:
        raise _decode_error(path) from err
    if not transcripts:
        raise TranscriptError(f"{path}: the file holds no transcripts")
    check_unique_ids(transcripts, str(path))
    return transcripts


def _decode_error(path: Path) -> TranscriptError:
    """The error for a file that is not UTF-8, naming the line and column of the first bad
    byte."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        return TranscriptError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}); "
            "save the file as UTF-8"
        )
    return TranscriptError(f"{path}: not UTF-8 text; save the file as UTF-8")


def check_unique_ids(transcripts: Sequence[Transcript], source: str) -> None:
    dupes = [k for k, n in Counter(t.id for t in transcripts).items() if n > 1]
    if dupes:
        raise TranscriptError(f"{source}: duplicate transcript ids {dupes[:5]}; ids must be unique")


def write_transcripts(path: str | Path, transcripts: Iterable[Transcript]) -> None:
    """Write transcripts as JSONL, atomically."""
    lines = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in transcripts)
    atomic_write(Path(path), lambda tmp: tmp.write_text(lines, encoding="utf-8"))


def dataset_hash(transcripts: Sequence[Transcript]) -> str:
    """A hash of everything a forward pass reads (ids, groups, messages, in order)."""
    digest = hashlib.blake2b(digest_size=12)
    for t in transcripts:
        digest.update(json.dumps([t.id, t.group, t.messages], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
