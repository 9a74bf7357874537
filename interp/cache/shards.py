"""Shard files and the manifest: the record of each shard (size, BLAKE2b checksum, rows), and
the checks every read makes against it (size, safetensors header, tensor shapes, rows, that
the shards hold every row exactly once). A file that fails raises :class:`Damage`, which
reading turns into :class:`~interp.cache.key.CacheIntegrityError` and caching repairs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from torch import Tensor

from interp.artifacts import (
    blake2b_hex,
    file_blake2b,
    write_bytes_atomic,
    write_json_atomic,
)
from interp.cache.key import MANIFEST, MANIFEST_VERSION, CacheKey

#: The safetensors header entry naming the key (:meth:`CacheKey.digest`) a shard was made for.
KEY_METADATA = "interp.cache.key"


def shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard-*.safetensors"))


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def record_path(folder: Path, name: str) -> Path:
    """Where a shard's record waits until the manifest lists it (``shard-00003.json``)."""
    return folder / name.replace(".safetensors", ".json")


class Damage(Exception):
    """A cache file that is not what the cache wrote (the message names it and what is wrong).
    Reading turns it into :class:`CacheIntegrityError`; caching reports it and rebuilds."""


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest records of one shard file: its name, size in bytes, BLAKE2b checksum
    (:func:`interp.artifacts.blake2b_hex`) and the dataset rows it holds, in its order."""

    name: str
    size: int
    blake2b: str
    rows: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rows": list(self.rows)}

    @classmethod
    def from_json(cls, raw: Any, where: Path) -> ShardRecord:
        try:
            record = cls(
                name=str(raw["name"]),
                size=int(raw["size"]),
                blake2b=str(raw["blake2b"]),
                rows=tuple(int(r) for r in raw["rows"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise Damage(f"{where}: a shard record is malformed ({err!r}): {raw!r:.200}") from None
        return record


@dataclass(frozen=True)
class Layout:
    """The tensors a shard of a cache must hold, with their shapes (``-1``: any length), and
    with ``key``, the cache key digest its header must name (a shard of another cache, copied
    in with its record, is refused)."""

    hooks: tuple[str, ...]
    d_model: int
    per_token: bool
    key: str | None = None

    def check_key(self, path: Path, metadata: dict[str, str] | None) -> None:
        found = (metadata or {}).get(KEY_METADATA)
        if self.key is not None and found != self.key:
            raise Damage(
                f"{path} was made for the cache of key {found}, not this one ({self.key}): "
                "a shard of another model, dataset or setting"
            )

    def shapes(self, m: int) -> dict[str, tuple[int, ...]]:
        expected = {f"pooled.{h}": (m, self.d_model) for h in self.hooks}
        expected.update({k: (m,) for k in ("index", "n_selected", "answer_found", "truncated")})
        if self.per_token:
            expected["token_offsets"] = (m + 1,)
            expected.update({f"tokens.{h}": (-1, self.d_model) for h in self.hooks})
        return expected

    def check(
        self,
        path: Path,
        shapes: dict[str, tuple[int, ...]],
        index: list[int],
        rows: tuple[int, ...],
    ) -> None:
        """Refuse a shard whose tensors, shapes or rows are not the ones its record plans."""
        expected = self.shapes(len(rows))
        if set(shapes) != set(expected):
            raise Damage(f"{path} holds tensors {sorted(shapes)}, expected {sorted(expected)}")
        for name, want in expected.items():
            got = shapes[name]
            if len(got) != len(want) or any(
                w not in (-1, g) for g, w in zip(got, want, strict=True)
            ):
                raise Damage(f"{path}: tensor {name} has shape {list(got)}, expected {list(want)}")
        if tuple(index) != rows:
            raise Damage(
                f"{path} holds rows {few_rows(index)}, but the manifest records rows "
                f"{few_rows(rows)} for it (a shard of another run or shard size)"
            )


def few_rows(rows: Sequence[int], n: int = 6) -> str:
    shown = ", ".join(str(r) for r in rows[:n])
    return f"[{shown}{', ...' if len(rows) > n else ''}] ({len(rows)} rows)"


def _check_size(path: Path, record: ShardRecord) -> None:
    if not path.is_file():
        raise Damage(f"{path} is missing (the manifest lists it)")
    size = path.stat().st_size
    if size != record.size:
        raise Damage(
            f"{path} is {size} bytes, the manifest records {record.size} (truncated or overwritten)"
        )


def _check_digest(path: Path, record: ShardRecord, digest: str) -> None:
    if digest != record.blake2b:
        raise Damage(
            f"{path}: BLAKE2b checksum {digest[:16]}... differs from the manifest's "
            f"{record.blake2b[:16]}... (the file was altered after it was written)"
        )


def verify_shard(path: Path, record: ShardRecord, layout: Layout, full: bool) -> None:
    """Check a shard without loading its vectors: size, safetensors header, tensor shapes and
    rows against ``record``; with ``full``, its checksum too."""
    _check_size(path, record)
    if full:
        _check_digest(path, record, file_blake2b(path))
    try:
        with safe_open(path, "pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
            index = handle.get_tensor("index").tolist() if "index" in shapes else []
            metadata = handle.metadata()
    except (SafetensorError, OSError) as err:
        raise Damage(f"{path} is not a readable safetensors file ({err})") from None
    layout.check_key(path, metadata)
    layout.check(path, shapes, index, record.rows)


def read_shard(path: Path, record: ShardRecord, layout: Layout, full: bool) -> dict[str, Tensor]:
    """The tensors of a shard, checked as :func:`verify_shard` checks it."""
    _check_size(path, record)
    try:
        if full:
            blob = path.read_bytes()
            _check_digest(path, record, blake2b_hex(blob))
            tensors = safetensors_load(blob)
        else:
            tensors = load_file(path)
        if layout.key is not None:
            with safe_open(path, "pt") as handle:
                layout.check_key(path, handle.metadata())
    except SafetensorError as err:
        raise Damage(f"{path} is not a readable safetensors file ({err})") from None
    index = tensors["index"].tolist() if "index" in tensors else []
    layout.check(path, {k: tuple(v.shape) for k, v in tensors.items()}, index, record.rows)
    return tensors


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder``, refusing (:class:`Damage`, naming the file) one that is
    empty, not JSON, without a valid ``key``, or of another manifest version."""
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an activation cache (no {MANIFEST})")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise Damage(f"{path} is empty (its write was cut)")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise Damage(f"{path} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or "key" not in manifest:
        raise Damage(f"{path} has no 'key' (it does not say what made the cache)")
    version = manifest.get("manifest_version", 1)
    if version != MANIFEST_VERSION:
        raise Damage(
            f"{path} has manifest version {version}, written by an older interp (this one "
            f"reads version {MANIFEST_VERSION})"
        )
    try:
        CacheKey.from_json(manifest["key"])
    except (TypeError, KeyError, AttributeError) as err:
        raise Damage(f"{path} has a malformed 'key' ({err})") from None
    return manifest


def read_records(manifest: dict[str, Any], folder: Path) -> list[ShardRecord]:
    raw = manifest.get("shards", [])
    if not isinstance(raw, list):
        raise Damage(f"{folder / MANIFEST}: 'shards' is not a list of shard records")
    return [ShardRecord.from_json(r, folder / MANIFEST) for r in raw]


def check_coverage(records: Sequence[ShardRecord], n: int, where: Path) -> None:
    """Refuse shards that are not named in order or do not hold rows ``0..n-1`` exactly once."""
    names = [r.name for r in records]
    if names != [shard_name(i) for i in range(len(records))]:
        raise Damage(f"{where} lists shards {names[:4]}..., not shard-00000... in order")
    counts = Counter(row for r in records for row in r.rows)
    missing = [i for i in range(n) if i not in counts]
    repeated = sorted(i for i, c in counts.items() if c > 1 or not 0 <= i < n)
    if missing or repeated:
        raise Damage(
            f"{where}: the shards do not hold rows 0..{n - 1} exactly once (missing rows "
            f"{few_rows(missing)}, repeated or out-of-range rows {few_rows(repeated)})"
        )


def write_shard(
    folder: Path, i: int, tensors: dict[str, Tensor], key: str | None = None
) -> ShardRecord:
    """Write shard ``i`` atomically, then its record (size, checksum, rows) beside it; ``key``
    (the cache key's digest) goes into the shard's header (:data:`KEY_METADATA`)."""
    blob = safetensors_save(tensors, metadata=None if key is None else {KEY_METADATA: key})
    record = ShardRecord(
        name=shard_name(i),
        size=len(blob),
        blake2b=blake2b_hex(blob),
        rows=tuple(tensors["index"].tolist()),
    )
    write_bytes_atomic(folder / record.name, blob)
    write_json_atomic(record_path(folder, record.name), record.to_json())
    return record
