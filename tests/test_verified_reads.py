"""Every byte read from the activation cache is checked against its checksum, by default.

Issue 20: a shard with flipped bytes, two rows swapped, or its header's dtype changed from F32
to I32 (same length) was read without a word, and ``python -m interp.cache`` said "cache
complete"; the SAE data path globbed ``shard-*.safetensors`` and trained on a stray copy; a
header too large named no file. Each test below fails on the code before per-part checksums
(``interp.cache.shards``), and checks the opt-out (``verify=False``, ``INTERP_CACHE_VERIFY=0``,
``--no-verify``) still skips the checksums.

The fixtures are small: 24 transcripts in shards of 4, through block 0 of the tiny model.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import interp.cache.shards as shards_module
from interp.cache import (
    CacheIntegrityError,
    CacheRepairWarning,
    cache_activations,
    load_activation_set,
)
from interp.cache.__main__ import main as cache_main
from interp.cache.config import CacheConfig
from interp.cache.key import Verify, verify_mode
from interp.hooks import hook_name
from interp.sae.data import count_tokens, token_batches

HOOKS = [hook_name(0), hook_name(0, "resid_pre")]
POOLED = f"pooled.{HOOKS[0]}"
KW = dict(batch_size=4, shard_size=4, progress=False)
FIX = "delete that file and run cache_activations"


@pytest.fixture(scope="module")
def data(small_dataset):
    return small_dataset[:24]


@pytest.fixture(scope="module")
def clean(tiny_model, data, tmp_path_factory):
    return cache_activations(tiny_model, data, HOOKS, cache_dir=tmp_path_factory.mktemp("c"), **KW)


def copy_of(acts, tmp_path: Path) -> Path:
    shutil.copytree(acts.path, tmp_path / "root" / acts.path.name)
    return tmp_path / "root" / acts.path.name


def _header(blob: bytes) -> tuple[int, dict]:
    n = int.from_bytes(blob[:8], "little")
    return n, json.loads(blob[8 : 8 + n])


def edit_tensor(path: Path, name: str, edit: Callable[[bytearray, int], None]) -> None:
    """Apply ``edit`` to the bytes of tensor ``name`` of a shard (in place, same length)."""
    blob = bytearray(path.read_bytes())
    n, header = _header(blob)
    begin, end = header[name]["data_offsets"]
    part = bytearray(blob[8 + n + begin : 8 + n + end])
    edit(part, header[name]["shape"][-1] * 4)
    blob[8 + n + begin : 8 + n + end] = part
    path.write_bytes(bytes(blob))


def flip(part: bytearray, row_bytes: int) -> None:
    for pos in range(3, len(part), 97):
        part[pos] ^= 0x10


def swap_rows(part: bytearray, row_bytes: int) -> None:
    first, second = bytes(part[:row_bytes]), bytes(part[row_bytes : 2 * row_bytes])
    part[:row_bytes], part[row_bytes : 2 * row_bytes] = second, first


def dtype_lie(path: Path) -> None:
    """Change the header's dtype of the pooled vectors from F32 to I32 (same length)."""
    blob = path.read_bytes()
    n, header = _header(blob)
    text = blob[8 : 8 + n].decode()
    entry = json.dumps(header[POOLED], separators=(",", ":"))
    assert entry in text and '"F32"' in entry
    path.write_bytes(
        blob[:8] + text.replace(entry, entry.replace("F32", "I32")).encode() + blob[8 + n :]
    )


DAMAGE = {
    "flipped-bytes": lambda p: edit_tensor(p, POOLED, flip),
    "swapped-rows": lambda p: edit_tensor(p, POOLED, swap_rows),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_vectors_are_named_on_read_and_rebuilt_by_caching(
    case, tiny_model, data, clean, tmp_path
):
    """Fails before: the default read returned the damaged numbers (flipped: other values,
    swapped: two transcripts' vectors exchanged); caching kept the shard."""
    folder = copy_of(clean, tmp_path)
    shard = folder / "shard-00002.safetensors"
    DAMAGE[case](shard)
    acts = load_activation_set(folder)  # opening reads headers only: they are intact
    named = re.escape(f"{shard}: the checksum of tensor {POOLED} differs")
    with pytest.raises(CacheIntegrityError, match=rf"{named}.*{FIX}"):
        acts[HOOKS[0]]
    assert torch.equal(acts[HOOKS[1]], clean[HOOKS[1]])  # the intact tensor reads
    with pytest.warns(CacheRepairWarning, match=named):
        repaired = cache_activations(tiny_model, data, HOOKS, cache_dir=folder.parent, **KW)
    assert torch.equal(repaired[HOOKS[0]], clean[HOOKS[0]])
    assert shard.read_bytes() == (clean.path / shard.name).read_bytes()


def test_a_dtype_lie_in_the_header_is_refused_and_rebuilt(tiny_model, data, clean, tmp_path):
    """Fails before: a header saying I32 where F32 was written (same byte length) was read as
    integers, even with checksums off: dtypes were not checked with shapes."""
    folder = copy_of(clean, tmp_path)
    shard = folder / "shard-00001.safetensors"
    dtype_lie(shard)
    named = re.escape(f"{shard}: tensor {POOLED} has dtype I32, expected F32")
    for verify in (None, False):
        with pytest.raises(CacheIntegrityError, match=rf"{named}.*{FIX}"):
            load_activation_set(folder, verify=verify)
    with pytest.warns(CacheRepairWarning, match=named):
        repaired = cache_activations(tiny_model, data, HOOKS, cache_dir=folder.parent, **KW)
    assert torch.equal(repaired[HOOKS[0]], clean[HOOKS[0]])


def test_a_header_too_large_names_the_file_and_the_fix(tiny_model, data, clean, tmp_path):
    """Fails before: safetensors' "HeaderTooLarge" from a reader that did not say which file."""
    folder = copy_of(clean, tmp_path)
    shard = folder / "shard-00004.safetensors"
    blob = shard.read_bytes()
    shard.write_bytes((1 << 40).to_bytes(8, "little") + blob[8:])
    named = re.escape(f"{shard}: its safetensors header claims {1 << 40} bytes")
    with pytest.raises(CacheIntegrityError, match=rf"{named}.*{FIX}"):
        load_activation_set(folder)
    with pytest.warns(CacheRepairWarning, match=named):
        cache_activations(tiny_model, data, HOOKS, cache_dir=folder.parent, **KW)
    assert shard.read_bytes() == (clean.path / shard.name).read_bytes()


def test_the_opt_out_skips_checksums_and_nothing_else(clean, tmp_path, monkeypatch):
    """``verify=False`` and ``INTERP_CACHE_VERIFY=0`` read a shard whose vectors were altered
    (that is what opting out means); ``--no-verify`` and ``--verify`` reach the job."""
    folder = copy_of(clean, tmp_path)
    edit_tensor(folder / "shard-00002.safetensors", POOLED, flip)
    assert not torch.equal(load_activation_set(folder, verify=False)[HOOKS[0]], clean[HOOKS[0]])
    monkeypatch.setenv("INTERP_CACHE_VERIFY", "0")
    assert verify_mode(None) is Verify.OFF
    assert not torch.equal(load_activation_set(folder)[HOOKS[0]], clean[HOOKS[0]])
    monkeypatch.setenv("INTERP_CACHE_VERIFY", "maybe")
    with pytest.raises(ValueError, match="INTERP_CACHE_VERIFY='maybe' is not understood"):
        load_activation_set(folder)
    monkeypatch.delenv("INTERP_CACHE_VERIFY")
    assert verify_mode(None) is Verify.READ
    assert CacheConfig(layers=(0,)).verify is None
    assert verify_mode(CacheConfig(layers=(0,), verify=False).verify) is Verify.OFF
    assert verify_mode(CacheConfig(layers=(0,), verify=True).verify) is Verify.FULL


def _hashed_bytes(monkeypatch) -> list[int]:
    sizes: list[int] = []
    real = shards_module.part_digest

    def counted(data):
        sizes.append(memoryview(data).nbytes)
        return real(data)

    monkeypatch.setattr(shards_module, "part_digest", counted)
    return sizes


def test_reads_hash_only_the_bytes_they_read(clean, tmp_path, monkeypatch):
    """Verified reads cost no extra I/O: opening hashes the headers and per-row integers, and
    reading one hook of two hashes that hook's vectors, never the other's."""
    folder = copy_of(clean, tmp_path)
    sizes = _hashed_bytes(monkeypatch)
    acts = load_activation_set(folder)
    opened = sum(sizes)
    acts[HOOKS[0]]
    total = sum(p.stat().st_size for p in folder.glob("shard-*.safetensors"))
    vectors = clean[HOOKS[0]].numel() * 4
    assert sum(sizes) - opened == vectors
    assert sum(sizes) < total - vectors // 2  # the other hook's vectors were not hashed


def test_caching_rechecks_whole_only_shards_changed_since_written(
    tiny_model, data, clean, tmp_path, monkeypatch
):
    """Reusing an untouched cache hashes no vectors (each shard's stamp is the one recorded
    when it was written); a copy (other inodes) is hashed whole, every byte."""
    kwargs = {**KW, "cache_dir": clean.path.parent}
    sizes = _hashed_bytes(monkeypatch)
    cache_activations(tiny_model, data, HOOKS, **kwargs)
    total = sum(p.stat().st_size for p in clean.path.glob("shard-*.safetensors"))
    assert sum(sizes) < total // 4
    folder = copy_of(clean, tmp_path)
    sizes.clear()
    cache_activations(tiny_model, data, HOOKS, **{**kwargs, "cache_dir": folder.parent})
    assert sum(sizes) >= total


@pytest.fixture(scope="module")
def per_token(tiny_model, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("pt")
    return cache_activations(tiny_model, data, HOOKS, cache_dir=root, per_token=True, **KW)


def test_the_sae_data_path_reads_the_manifest_not_a_glob(per_token, tmp_path):
    """Fails before: ``interp.sae.data`` globbed ``shard-*.safetensors``, so a stray copy of
    a shard beside the cache's six was trained on (its tokens counted twice)."""
    folder = copy_of(per_token, tmp_path)
    expected = sum(len(t) for t in per_token.per_token(HOOKS[0]))
    shutil.copyfile(folder / "shard-00000.safetensors", folder / "shard-00006.safetensors")
    acts = load_activation_set(folder)
    assert count_tokens(acts, HOOKS[0], None) == expected
    first_epoch = 0
    for batch in token_batches(acts, HOOKS[0], 1, buffer_tokens=10**9):
        first_epoch += len(batch)
        if first_epoch == expected:
            break
    assert first_epoch == expected


def test_the_sae_data_path_checks_the_bytes_it_reads(per_token, tmp_path):
    """Fails before: the SAE path loaded shards with ``load_file``, unchecked."""
    folder = copy_of(per_token, tmp_path)
    shard = folder / "shard-00003.safetensors"
    edit_tensor(shard, f"tokens.{HOOKS[0]}", flip)
    acts = load_activation_set(folder)
    named = re.escape(f"{shard}: the checksum of tensor tokens.{HOOKS[0]} differs")
    with pytest.raises(CacheIntegrityError, match=named):
        count_tokens(acts, HOOKS[0], None)


def test_python_m_interp_cache_rebuilds_a_damaged_shard(tmp_path, capsys):
    """Fails before: ``python -m interp.cache`` said "cache complete" over flipped bytes, a
    swapped pair of rows and a dtype lie. Now each damaged shard is named and written again,
    and the folder ends as the first run left it."""
    argv = ["--model", "tiny-random", "--max-scenarios", "4", "--cache-dir", str(tmp_path)]
    argv += ["--layers", "0", "--device", "cpu", "--no-progress", "--shard-size", "4"]
    assert cache_main(argv) == 0
    (folder,) = (tmp_path / "activations").iterdir()
    first = {p.name: p.read_bytes() for p in folder.glob("shard-*.safetensors")}
    hook = f"pooled.{hook_name(0)}"
    edit_tensor(folder / "shard-00000.safetensors", hook, flip)
    edit_tensor(folder / "shard-00001.safetensors", hook, swap_rows)
    blob = (folder / "shard-00002.safetensors").read_bytes()
    n = int.from_bytes(blob[:8], "little")
    lie = blob[8 : 8 + n].decode().replace('"F32"', '"I32"', 1).encode()
    (folder / "shard-00002.safetensors").write_bytes(blob[:8] + lie + blob[8 + n :])
    capsys.readouterr()
    with pytest.warns(CacheRepairWarning) as caught:
        assert cache_main(argv) == 0
    messages = "\n".join(str(w.message) for w in caught)
    for name in ("shard-00000", "shard-00001", "shard-00002"):
        assert f"{folder / name}.safetensors" in messages, messages
    assert "cache complete" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in folder.glob("shard-*.safetensors")} == first
