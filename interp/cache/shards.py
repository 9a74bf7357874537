"""Shard files and the manifest: the record of each shard (size, checksums of its parts, rows,
the file's stamp when it was written or last checked whole), and the checks every read makes
against it (size, safetensors header, tensor dtypes and shapes, rows, that the shards hold
every row exactly once, and the checksum of every byte read). A file that fails raises
:class:`Damage`, which reading turns into :class:`~interp.cache.key.CacheIntegrityError` and
caching repairs.

Checksums are kept per part (the header, then each tensor; :data:`PART_HASH`) rather than per
file, so that a read of one tensor can check exactly the bytes it reads: opening a cache reads
and checks the headers, reading one hook of a cache of many hooks checks that hook's bytes and
touches no other. A safetensors file has no bytes outside its header and tensors (the library
refuses gaps), so checking every part checks the whole file."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import xxhash
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from torch import Tensor

from interp.artifacts import write_bytes_atomic, write_json_atomic
from interp.cache.key import MANIFEST, MANIFEST_VERSION, CacheKey, Verify

#: The safetensors header entry naming the key (:meth:`CacheKey.digest`) a shard was made for.
KEY_METADATA = "interp.cache.key"

#: The checksum of each part of a shard: xxHash's XXH3 with 128 bits, fast enough to check
#: every byte a read touches (docs/results.md compares it with BLAKE2b). It detects damage
#: (flipped bits, cut or rewritten files); it is not meant to resist a forged shard.
PART_HASH = "xxh3_128"

#: The name under which a record keeps the checksum of the shard's header (its 8-byte length
#: and JSON); every other part is a tensor, by its name.
HEADER_PART = "__header__"

#: The safetensors dtype of the vectors, by the dtype the cache stores them in.
STORE_CODES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}

#: The dtypes the per-row integers may have (row indices and token offsets are int64; the
#: statistics int64, or bool in caches written by hand such as the benchmarks' synthetic one).
_INDEX_CODES = frozenset({"I64"})
_STAT_CODES = frozenset({"I64", "BOOL"})

#: One version of a file (see :func:`file_stamp`).
Stamp = tuple[int, int, int, int]


def shard_files(path: Path) -> list[Path]:
    """Every shard file in ``path``, listed or not: for the writer, which removes strays.
    Readers take the manifest's list (:func:`read_records`), never this one."""
    return sorted(path.glob("shard-*.safetensors"))


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def record_path(folder: Path, name: str) -> Path:
    """Where a shard's record waits until the manifest lists it (``shard-00003.json``)."""
    return folder / name.replace(".safetensors", ".json")


def file_stamp(path: Path) -> Stamp:
    """What identifies one version of a file: size, modification and change times (ns) and
    inode. Writing a file changes both times, setting its modification time back changes
    its change time, and a copy or a file renamed into place is another inode."""
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def part_digest(data: Any) -> str:
    """The :data:`PART_HASH` checksum (hex) of a bytes-like object."""
    return xxhash.xxh3_128_hexdigest(data)


def tensor_digest(tensor: Tensor) -> str:
    """:func:`part_digest` of a tensor's bytes, which are the bytes safetensors stores."""
    return part_digest(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())


class Damage(Exception):
    """A cache file that is not what the cache wrote (the message names it and what is wrong).
    Reading turns it into :class:`CacheIntegrityError`; caching reports it and rebuilds."""


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest records of one shard file: its name, size in bytes, the dataset rows
    it holds (in its order), the checksum of each part (:data:`HEADER_PART` and every tensor,
    :data:`PART_HASH`) and the file's :func:`file_stamp` when the cache wrote it or last
    checked it whole (caching checks a shard whole again only when its stamp has changed)."""

    name: str
    size: int
    rows: tuple[int, ...]
    parts: dict[str, str] = field(hash=False)
    stamp: Stamp | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "rows": list(self.rows),
            "parts": dict(self.parts),
            "stamp": None if self.stamp is None else list(self.stamp),
        }

    @classmethod
    def from_json(cls, raw: Any, where: Path) -> ShardRecord:
        try:
            parts = {str(k): str(v) for k, v in raw["parts"].items()}
            stamp = raw.get("stamp")
            record = cls(
                name=str(raw["name"]),
                size=int(raw["size"]),
                rows=tuple(int(r) for r in raw["rows"]),
                parts=parts,
                stamp=None if stamp is None else tuple(int(s) for s in stamp),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise Damage(f"{where}: a shard record is malformed ({err!r}): {raw!r:.200}") from None
        if HEADER_PART not in parts:
            raise Damage(f"{where}: the record of {record.name} has no {HEADER_PART} checksum")
        return record


@dataclass(frozen=True)
class Entry:
    """One tensor as a shard's header describes it: safetensors dtype, shape, and where its
    bytes lie in the file (``start``, ``end``: offsets from the file's first byte)."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: Path, size: int, blob: bytes | None = None) -> tuple[bytes, dict[str, Any]]:
    """The header bytes of the shard at ``path`` of ``size`` bytes (its 8-byte length and its
    JSON; taken from ``blob`` when the file was read whole) and the header parsed. A length
    past the end of the file or a header that is not a JSON object raise :class:`Damage`."""
    try:
        if blob is None:
            with path.open("rb") as handle:
                head = handle.read(8)
                n = int.from_bytes(head, "little") if len(head) == 8 else -1
                if 0 < n <= size - 8:
                    head += handle.read(n)
        else:
            n = int.from_bytes(blob[:8], "little") if size >= 8 else -1
            head = blob[: 8 + n] if 0 < n <= size - 8 else blob[:8]
    except OSError as err:
        raise Damage(f"{path} cannot be read ({err})") from None
    if not 0 < n <= size - 8:
        raise Damage(
            f"{path}: its safetensors header claims {n} bytes, more than the file's {size} "
            "(the header's length was damaged)"
        )
    try:
        header = json.loads(head[8:])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Damage(f"{path}: its safetensors header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise Damage(f"{path}: its safetensors header is not a JSON object")
    return head, header


def header_entries(path: Path, head: bytes, header: dict[str, Any]) -> dict[str, Entry]:
    """The tensors a parsed header describes, by name (:class:`Entry`)."""
    entries = {}
    for name, raw in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in raw["data_offsets"])
            shape = tuple(int(x) for x in raw["shape"])
            entries[name] = Entry(str(raw["dtype"]), shape, len(head) + begin, len(head) + end)
        except (KeyError, TypeError, ValueError) as err:
            raise Damage(f"{path}: header entry {name!r} is malformed ({err!r})") from None
    return entries


def blob_parts(path: Path, blob: bytes) -> dict[str, str]:
    """The checksum of each part of a whole shard file's bytes (see :class:`ShardRecord`)."""
    head, header = read_header(path, len(blob), blob)
    view = memoryview(blob)
    parts = {HEADER_PART: part_digest(head)}
    for name, entry in header_entries(path, head, header).items():
        parts[name] = part_digest(view[entry.start : entry.end])
    return parts


def _check_part(path: Path, record: ShardRecord, part: str, digest: str) -> None:
    if record.parts.get(part) != digest:
        what = "its header" if part == HEADER_PART else f"tensor {part}"
        raise Damage(
            f"{path}: the checksum of {what} differs from the manifest's (the file was altered "
            "after it was written)"
        )


@dataclass(frozen=True)
class Layout:
    """The tensors a shard of a cache must hold, with their shapes (``-1``: any length) and
    dtypes (the vectors in ``dtype``, the cache's store dtype; None: any float), and with
    ``key``, the cache key digest its header must name (a shard of another cache, copied in
    with its record, is refused)."""

    hooks: tuple[str, ...]
    d_model: int
    per_token: bool
    key: str | None = None
    dtype: str | None = None

    def check_key(self, path: Path, metadata: dict[str, str] | None) -> None:
        found = (metadata or {}).get(KEY_METADATA)
        if self.key is not None and found != self.key:
            raise Damage(
                f"{path} was made for the cache of key {found}, not this one ({self.key}): "
                "a shard of another model, dataset or setting"
            )

    def expected(self, m: int) -> dict[str, tuple[tuple[int, ...], frozenset[str]]]:
        """Shape and allowed dtypes of each tensor of a shard of ``m`` rows."""
        vectors = frozenset(
            STORE_CODES.values() if self.dtype is None else {STORE_CODES[self.dtype]}
        )
        expected = {f"pooled.{h}": ((m, self.d_model), vectors) for h in self.hooks}
        expected["index"] = ((m,), _INDEX_CODES)
        expected.update(
            {k: ((m,), _STAT_CODES) for k in ("n_selected", "answer_found", "truncated")}
        )
        if self.per_token:
            expected["token_offsets"] = ((m + 1,), _INDEX_CODES)
            expected.update({f"tokens.{h}": ((-1, self.d_model), vectors) for h in self.hooks})
        return expected

    def check(self, path: Path, entries: dict[str, Entry], rows: tuple[int, ...]) -> None:
        """Refuse a shard whose tensors, dtypes or shapes are not the ones its record plans."""
        expected = self.expected(len(rows))
        if set(entries) != set(expected):
            raise Damage(f"{path} holds tensors {sorted(entries)}, expected {sorted(expected)}")
        for name, (want, codes) in expected.items():
            got = entries[name]
            if got.dtype not in codes:
                raise Damage(
                    f"{path}: tensor {name} has dtype {got.dtype}, expected "
                    f"{' or '.join(sorted(codes))}"
                )
            if len(got.shape) != len(want) or any(
                w not in (-1, g) for g, w in zip(got.shape, want, strict=True)
            ):
                raise Damage(
                    f"{path}: tensor {name} has shape {list(got.shape)}, expected {list(want)}"
                )

    @staticmethod
    def check_rows(path: Path, index: list[int], rows: tuple[int, ...]) -> None:
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


def read_tensors(path: Path, names: Sequence[str], record: ShardRecord | None) -> dict[str, Tensor]:
    """Tensors ``names`` of a shard (memory-mapped, only their bytes are read); with
    ``record``, each one's bytes are checked against its checksum."""
    try:
        with safe_open(path, "pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in names}
    except (SafetensorError, OSError) as err:
        raise Damage(f"{path} is not a readable safetensors file ({err})") from None
    if record is not None:
        for name, tensor in tensors.items():
            _check_part(path, record, name, tensor_digest(tensor))
    return tensors


def verify_shard(
    path: Path, record: ShardRecord, layout: Layout, *, digests: bool, whole: bool
) -> Stamp:
    """Check a shard without loading its vectors: size, header, tensor dtypes and shapes, the
    cache key and the rows against ``record``; with ``digests``, the checksums of the bytes
    read (the header and the row index); with ``whole``, every byte's checksum (one read of
    the file). Returns the file's :func:`file_stamp`, the same before and after the check."""
    _check_size(path, record)
    before = file_stamp(path)
    blob = path.read_bytes() if whole else None
    head, header = read_header(path, record.size, blob)
    entries = header_entries(path, head, header)
    metadata = header.get("__metadata__")
    layout.check_key(path, metadata if isinstance(metadata, dict) else None)
    layout.check(path, entries, record.rows)
    index = read_tensors(path, ["index"], None)["index"]
    layout.check_rows(path, index.tolist(), record.rows)  # before checksums: a clearer message
    if blob is not None:
        found = blob_parts(path, blob)
        for part in sorted(record.parts.keys() | found.keys()):
            _check_part(path, record, part, found.get(part, ""))
    elif digests:
        _check_part(path, record, HEADER_PART, part_digest(head))
        _check_part(path, record, "index", tensor_digest(index))
    if file_stamp(path) != before:
        raise Damage(f"{path} changed while it was being checked (another writer?)")
    return before


def _moved(path: Path, record: ShardRecord) -> bool:
    """Whether ``path`` is not the file version ``record`` was stamped with."""
    try:
        return file_stamp(path) != record.stamp
    except OSError:
        return True  # missing: the check names it


def check_shard(
    path: Path, record: ShardRecord, layout: Layout, verify: Verify, caching: bool
) -> tuple[ShardRecord, Stamp]:
    """:func:`verify_shard` at the level ``verify`` asks for (:class:`Verify`): whole with
    ``FULL``, or with ``READ`` when ``caching`` and the file's stamp is not the recorded one.
    Returns the record (stamped with the file version, when it was just checked whole) and
    the file's stamp."""
    digests = verify is not Verify.OFF
    whole = verify is Verify.FULL or (caching and digests and _moved(path, record))
    stamp = verify_shard(path, record, layout, digests=digests, whole=whole)
    return (replace(record, stamp=stamp) if whole else record), stamp


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
    """Write shard ``i`` atomically, then its record (size, rows, checksums of its parts, its
    stamp once in place) beside it; ``key`` (the cache key's digest) goes into the shard's
    header (:data:`KEY_METADATA`)."""
    blob = safetensors_save(tensors, metadata=None if key is None else {KEY_METADATA: key})
    path = folder / shard_name(i)
    write_bytes_atomic(path, blob)
    record = ShardRecord(
        name=path.name,
        size=len(blob),
        rows=tuple(tensors["index"].tolist()),
        parts=blob_parts(path, blob),
        stamp=file_stamp(path),
    )
    write_json_atomic(record_path(folder, record.name), record.to_json())
    return record
