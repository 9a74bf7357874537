"""What every reader of a public deception dataset shares: where its files are expected, the
error that says what to clone or download, and small checked readers of JSON, YAML and CSV.

An :class:`ExternalSet` is what the dataset registry holds for a public set: calling it reads
the set from the folder the user names (``builtin:apollo-roleplaying=DIR``), else from the
folder named by its environment variable, else from ``<cache>/external/<folder>``. A folder
that lacks the set's file raises :class:`ExternalDataError` naming the file it looked for and
what to clone or download.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.data.transcripts import Transcript, check_unique_ids
from interp.paths import cache_root

#: Apollo Research's deception-detection repository (roleplaying, AI liar, insider trading,
#: sandbagging, alpaca rollouts, the RepE facts): a clone, or a folder with its ``data/``.
APOLLO = "deception-detection"
APOLLO_ENV = "INTERP_DECEPTION_DETECTION"
APOLLO_GET = "clone it: git clone https://github.com/ApolloResearch/deception-detection {where}"
#: Liars' Bench (Cadenza Labs), released on the Hugging Face hub (gated).
LIARS_BENCH = "liars-bench"
LIARS_BENCH_ENV = "INTERP_LIARS_BENCH"
LIARS_BENCH_GET = (
    "download it (accept its terms on the hub first): huggingface-cli download "
    "Cadenza-Labs/liars-bench --repo-type dataset --local-dir {where}"
)


class ExternalDataError(ValueError):
    """A public dataset's files are missing or do not have the expected format; the message
    names the file (and item or line) and the fix."""


Reader = Callable[[Path], list[Transcript]]


@dataclass(frozen=True)
class ExternalSet:
    """A public dataset read from the user's copy; ``set(root)`` returns its transcripts.

    ``expects`` is the file (or folder) inside the copy that the reader opens, ``tokens`` the
    token selection its replies are scored with (``after:Action:`` for insider trading, as
    upstream), ``stances`` the ``meta`` columns whose AUROC is reported beside each score
    (``(key, positive value)``), ``control`` marks a set of ordinary chat for thresholds.
    """

    name: str
    description: str
    folder: str  # default folder name under <cache>/external, and the copy it stands for
    env: str
    get: str
    expects: str
    reader: Reader = field(repr=False)
    tokens: str = "reply"
    stances: tuple[tuple[str, str], ...] = ()
    control: bool = False
    grader: str | None = None

    def root(self, root: str | Path | None = None) -> Path:
        """The copy read: ``root``, else ``$<env>``, else ``<cache>/external/<folder>``."""
        if root:
            return Path(root)
        from_env = os.environ.get(self.env)
        return Path(from_env) if from_env else cache_root() / "external" / self.folder

    def where(self, root: str | Path | None = None) -> str:
        """Where the set expects its files, in words (what :func:`dataset_sources` shows)."""
        return f"{self.root(root) / self.expects} (set ${self.env} or pass builtin:{self.name}=DIR)"

    def path(self, root: str | Path | None = None) -> Path:
        """The file the reader opens; a file given as ``root`` is read as it is."""
        base = self.root(root)
        if base.is_file():
            return base
        target = base / self.expects
        if not target.exists():
            raise ExternalDataError(
                f"{self.name}: {target} does not exist. {self.description}; it is read from "
                f"your copy of {self.folder}: "
                + self.get.format(where=self.root(root))
                + f" (or point ${self.env}, or builtin:{self.name}=DIR, at a copy elsewhere)"
            )
        return target

    def __call__(self, root: str | Path | None = None) -> list[Transcript]:
        path = self.path(root)
        transcripts = self.reader(path)
        if not transcripts:
            raise ExternalDataError(f"{self.name}: {path} holds no usable transcripts")
        check_unique_ids(transcripts, str(path))
        return transcripts


def read_json_file(path: Path) -> Any:
    """The decoded JSON of ``path``; a syntax error names the file, line and column."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ExternalDataError(
            f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); is it the upstream file?"
        ) from None


def read_yaml_items(path: Path) -> list[tuple[int, Any]]:
    """``(line, item)`` for each item of the YAML list in ``path`` (1-based line numbers)."""
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ExternalDataError(f"{path}{line}: not valid YAML ({err})") from None
    if not isinstance(data, list) or node is None:
        raise ExternalDataError(f"{path}: expected a YAML list of items, got {type(data).__name__}")
    return [(n.start_mark.line + 1, item) for n, item in zip(node.value, data, strict=True)]


def read_csv_rows(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``(line, row)`` of a CSV file with a header holding ``columns``."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ExternalDataError(
                f"{path}:1: the header lacks column(s) {missing} (has {reader.fieldnames}); "
                f"expected a CSV with columns {list(columns)}"
            )
        return [(reader.line_num, row) for row in reader]


def require_keys(item: Any, keys: Sequence[str], where: str) -> dict[str, Any]:
    """``item`` as a dict holding string values for ``keys``, or an error naming ``where``."""
    if not isinstance(item, dict):
        raise ExternalDataError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [k for k in keys if not isinstance(item.get(k), str)]
    if missing:
        raise ExternalDataError(
            f"{where}: missing text field(s) {missing} (has {sorted(item)}); is it the upstream "
            "format described in docs/datasets.md?"
        )
    return item


def turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}
