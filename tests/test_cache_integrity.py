"""The activation cache never reads what it did not write.

Each test names the fault it injects. The tests marked "fails before" in their docstring
reproduce a fault found on the code before shard checksums, records and the folder lock: a
truncated shard skipped on resume, flipped bytes and overwritten shards read as numbers, a
folder marked complete with shards of two shard sizes, two processes both doing the whole job,
orphan ``.tmp`` files never removed, unreadable manifests failing with errors that do not
name them, and renames never flushed to disk.

The reference is one clean run (24 transcripts, shards of 4, batches of 4: 6 shards and 6
forward passes, through block 0 only, to keep the tests fast); a damaged folder must end
bit-identical to it (pooled tensors and shard bytes) or raise an error naming the file, never
hold other numbers.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from interp.artifacts import atomic_write
from interp.cache import (
    MANIFEST,
    CacheIntegrityError,
    CacheRepairWarning,
    cache_activations,
    load_activation_set,
)
from interp.hooks import hook_name

HOOKS = [hook_name(0), hook_name(0, "resid_pre")]
N_ROWS = 24
KW = dict(batch_size=4, shard_size=4, progress=False)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(small_dataset):
    return small_dataset[:N_ROWS]


@pytest.fixture(scope="module")
def clean(tiny_model, data, tmp_path_factory):
    """The reference: one uninterrupted run into a fresh folder."""
    root = tmp_path_factory.mktemp("clean")
    return cache_activations(tiny_model, data, HOOKS, cache_dir=root, **KW)


def copy_of(clean, tmp_path: Path) -> Path:
    """A copy of the clean cache folder under a new cache root (same folder name)."""
    shutil.copytree(clean.path, tmp_path / "root" / clean.path.name)
    return tmp_path / "root" / clean.path.name


def shards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.safetensors"))}


def assert_same(acts, clean) -> None:
    """Bit-identical to the clean run: every tensor, and every shard file's bytes."""
    for hook in HOOKS:
        assert torch.equal(acts[hook], clean[hook]), hook
    assert torch.equal(acts.n_selected, clean.n_selected)
    assert acts.ids == clean.ids
    assert shards(acts.path) == shards(clean.path)
    assert not list(acts.path.glob(".*.tmp")), "an orphan temporary file is left"
    assert not list(acts.path.glob("shard-*.json")), "pending shard records are left"
    loaded = load_activation_set(acts.path, expect=clean.key, verify=True)
    assert torch.equal(loaded[HOOKS[0]], clean[HOOKS[0]])


def recache(model, dataset, folder: Path, **kwargs):
    return cache_activations(model, dataset, HOOKS, cache_dir=folder.parent, **{**KW, **kwargs})


# --- durable writes --------------------------------------------------------------------------


def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(
    tmp_path, monkeypatch
):
    """Fails before: shards (and every file) were renamed into place without any fsync."""
    events: list[tuple[str, int | str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        mode = os.fstat(fd)
        events.append(("fsync-dir" if stat.S_ISDIR(mode.st_mode) else "fsync", mode.st_ino))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"data"))
    assert events == [
        ("fsync", target.stat().st_ino),  # the renamed file is the one flushed
        ("replace", "out.bin"),
        ("fsync-dir", tmp_path.stat().st_ino),
    ]


# --- damaged shards --------------------------------------------------------------------------


def test_truncated_and_empty_shards_are_rebuilt_on_resume(
    tiny_model, data, clean, tmp_path, monkeypatch, count_passes
):
    """Fails before: resume trusted any existing shard file, so a truncated or 0-byte shard was
    skipped, the cache marked complete, and every later read died in a SafetensorError."""
    folder = tmp_path / "root" / clean.path.name
    count_passes(tiny_model, fail_after=4)  # dies in the fifth shard
    with pytest.raises(KeyboardInterrupt):
        recache(tiny_model, data, folder)
    monkeypatch.undo()
    first, second = folder / "shard-00000.safetensors", folder / "shard-00001.safetensors"
    first.write_bytes(first.read_bytes()[:-100])
    second.write_bytes(b"")
    with pytest.warns(CacheRepairWarning) as caught:
        acts = recache(tiny_model, data, folder)
    messages = "\n".join(str(w.message) for w in caught)
    assert f"{first} is " in messages and "truncated" in messages
    assert f"{second} is 0 bytes" in messages
    assert_same(acts, clean)


def test_flipped_bytes_are_caught_by_the_checksum(tiny_model, data, clean, tmp_path, monkeypatch):
    """Fails before: 1,000 flipped bytes in a shard's vectors were read as numbers (off by
    ~4e4)."""
    folder = copy_of(clean, tmp_path)
    shard = folder / "shard-00003.safetensors"
    blob = bytearray(shard.read_bytes())
    n = int.from_bytes(blob[:8], "little")
    begin, end = json.loads(blob[8 : 8 + n])[f"pooled.{HOOKS[0]}"]["data_offsets"]
    rng = random.Random(0)
    for pos in rng.sample(range(8 + n + begin, 8 + n + end), 1000):
        blob[pos] ^= 0xFF
    shard.write_bytes(bytes(blob))
    named = re.escape(f"{shard}: the checksum of")
    with pytest.raises(CacheIntegrityError, match=rf"{named} .* rebuild it"):
        load_activation_set(folder, verify=True)
    monkeypatch.setenv("INTERP_CACHE_VERIFY", "1")
    with pytest.raises(CacheIntegrityError, match=named):
        load_activation_set(folder)
    monkeypatch.delenv("INTERP_CACHE_VERIFY")
    with pytest.warns(CacheRepairWarning, match=named):
        acts = recache(tiny_model, data, folder, verify=True)
    assert_same(acts, clean)


def test_a_shard_overwritten_by_another_is_refused(tiny_model, data, clean, tmp_path):
    """Fails before: a shard copied over another loaded without error, leaving the lost
    shard's rows as uninitialised memory."""
    folder = copy_of(clean, tmp_path)
    lost = folder / "shard-00002.safetensors"
    shutil.copyfile(folder / "shard-00001.safetensors", lost)
    named = re.escape(f"{lost} holds rows")
    with pytest.raises(CacheIntegrityError, match=rf"{named} .* manifest records rows"):
        load_activation_set(folder)  # the fast path: no checksum needed
    with pytest.warns(CacheRepairWarning, match=named):
        acts = recache(tiny_model, data, folder)
    assert_same(acts, clean)


def test_rows_must_be_covered_exactly_once(clean, tmp_path):
    """A manifest whose shard records miss or repeat a row is refused, naming the rows."""
    folder = copy_of(clean, tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["shards"][1]["rows"][0] = manifest["shards"][0]["rows"][0]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CacheIntegrityError, match=r"exactly once \(missing rows \[\d+\]"):
        load_activation_set(folder)


def test_a_shard_plan_of_another_shard_size_is_rebuilt(
    tiny_model, data, clean, tmp_path, monkeypatch, count_passes
):
    """Fails before: a run with shards of 8 on a folder whose first shards were cut at 4 (a
    second process that rewrote the manifest) kept them and marked the folder complete; every
    read then failed ("shards hold ... transcripts, manifest says 24")."""
    folder = tmp_path / "root" / clean.path.name
    count_passes(tiny_model, fail_after=2)  # two shards of 4 written
    with pytest.raises(KeyboardInterrupt):
        recache(tiny_model, data, folder)
    monkeypatch.undo()
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "shard_size": 8}))
    with pytest.warns(CacheRepairWarning, match="another shard size"):
        acts = recache(tiny_model, data, folder, shard_size=8)
    reference = cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path / "ref", **{**KW, "shard_size": 8}
    )
    assert_same(acts, reference)


# --- manifests and orphans -------------------------------------------------------------------

BAD_MANIFESTS = {
    "empty": lambda m: "",
    "cut": lambda m: json.dumps(m)[:40],
    "no key": lambda m: json.dumps({k: v for k, v in m.items() if k != "key"}),
    "older version": lambda m: json.dumps(
        {**m, "manifest_version": 1, "shards": [s["name"] for s in m["shards"]]}
    ),
}
BAD_MESSAGES = {
    "empty": "is empty",
    "cut": "is not valid JSON",
    "no key": "has no 'key'",
    "older version": "has manifest version 1",
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_a_bad_manifest_is_named_and_rebuilt(tiny_model, data, clean, tmp_path, case):
    """Fails before: a manifest without ``key`` was a KeyError, a corrupt one "Expecting value:
    line 1 column 1" naming no file; an old manifest (no checksums) was trusted."""
    folder = copy_of(clean, tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(BAD_MANIFESTS[case](manifest))
    named = re.escape(f"{folder / MANIFEST} {BAD_MESSAGES[case]}")
    with pytest.raises(CacheIntegrityError, match=rf"{named}.*run cache_activations"):
        load_activation_set(folder)
    with pytest.warns(CacheRepairWarning, match=named):
        acts = recache(tiny_model, data, folder)
    assert_same(acts, clean)


def test_orphans_of_cut_writes_are_removed(tiny_model, data, clean, tmp_path):
    """Fails before: ``.tmp`` files of a cut write were never removed (here beside a complete
    cache, which is then reused without a forward pass)."""
    folder = copy_of(clean, tmp_path)
    orphan = folder / ".shard-00004.safetensors.x1y2.tmp"
    orphan.write_bytes(b"half a shard")
    partial = folder / "extra.partial"
    partial.mkdir()
    with pytest.warns(CacheRepairWarning, match=re.escape(f"removed {orphan}, left by")):
        acts = recache(tiny_model, data, folder)
    assert not orphan.exists() and not partial.exists()
    assert_same(acts, clean)


# --- fault injection -------------------------------------------------------------------------


def _truncate(path: Path, rng: random.Random) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: rng.randrange(len(blob))])


def _flip(path: Path, rng: random.Random) -> None:
    blob = bytearray(path.read_bytes())
    for pos in rng.sample(range(len(blob)), rng.randint(1, 50)):
        blob[pos] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(blob))


def _duplicate(path: Path, rng: random.Random) -> None:
    others = [p for p in sorted(path.parent.glob("shard-*.safetensors")) if p != path]
    shutil.copyfile(rng.choice(others), path)


FAULTS = {
    "truncate": _truncate,
    "flip": _flip,
    "duplicate": _duplicate,
    "delete": lambda path, rng: path.unlink(),
}


@pytest.mark.parametrize("seed", range(4))
def test_random_damage_ends_identical_or_named(tiny_model, data, clean, tmp_path, seed):
    """Damage one to three random shards in random ways: a checked read either returns the
    clean numbers or raises an error naming a damaged file; caching restores the clean run."""
    rng = random.Random(seed)
    folder = copy_of(clean, tmp_path)
    names = rng.sample(sorted(shards(folder)), rng.randint(1, 3))
    for name in names:
        FAULTS[rng.choice(sorted(FAULTS))](folder / name, rng)
    with pytest.raises(CacheIntegrityError) as err:  # every fault changes the bytes
        load_activation_set(folder, verify=True)
    assert any(str(folder / n) in str(err.value) for n in names), err.value
    with pytest.warns(CacheRepairWarning):
        acts = recache(tiny_model, data, folder, verify=True)
    assert_same(acts, clean)


WORKER = r"""
import os, sys, time
from pathlib import Path

from interp.cache import cache_activations
from interp.data.datasets import build_consistency
from interp.hooks import hook_name
from interp.models import load_model

root, shard_size, mode, arg = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
model = load_model("tiny-random", device="cpu")
data = build_consistency()
groups = sorted({t.group for t in data})[:3]
data = [t for t in data if t.group in groups][:int(os.environ["WORKER_ROWS"])]
calls = {"n": 0}
forward = model.bridge.run_with_cache

def counted(*args, **kwargs):
    calls["n"] += 1
    time.sleep(float(os.environ.get("WORKER_SLOW", "0")))
    return forward(*args, **kwargs)

model.bridge.run_with_cache = counted
if mode == "die-at-fsync":  # the process dies (no cleanup) at its arg-th fsync
    seen, fsync = {"n": 0}, os.fsync
    def dying(fd):
        seen["n"] += 1
        if seen["n"] == int(arg):
            os._exit(137)
        fsync(fd)
    os.fsync = dying
elif mode == "barrier":  # start caching together with the other worker
    Path(f"{arg}.{os.getpid()}").touch()
    while len(list(Path(arg).parent.glob(Path(arg).name + ".*"))) < 2:
        time.sleep(0.01)
print("ready", flush=True)
cache_activations(
    model, data, [hook_name(0), hook_name(0, "resid_pre")], cache_dir=root, batch_size=4,
    shard_size=shard_size, progress=False,
)
print("passes", calls["n"], flush=True)
"""


def _worker(root: Path, shard_size: int, mode: str, arg: str, slow: float = 0.0):
    env = {**os.environ, "WORKER_SLOW": str(slow), "WORKER_ROWS": str(N_ROWS)}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(root), str(shard_size), mode, arg],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_killed_writers_resume_to_the_clean_run(tiny_model, data, clean, tmp_path):
    """Real deaths, no cleanup: two writers die at a random fsync (mid-shard, between a shard
    and its record, before the manifest is complete), one is SIGKILLed after a random delay.
    Each folder then resumes to the clean run, bit for bit, with no orphan left."""
    rng = random.Random(7)
    # 2 fsyncs per atomic write: manifest, 6 x (shard, record), complete manifest.
    plans = [("die-at-fsync", str(rng.randint(1, 28))) for _ in range(2)] + [("sigkill", "-")]
    workers = [(_worker(tmp_path / f"w{i}", 4, *plan), plan) for i, plan in enumerate(plans)]
    for proc, (mode, _) in workers:
        if mode == "sigkill":
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(rng.uniform(0.0, 1.0))
            proc.send_signal(signal.SIGKILL)
    for i, (proc, (mode, arg)) in enumerate(workers):
        proc.wait(timeout=120)
        if mode == "die-at-fsync":
            assert proc.returncode == 137, (arg, proc.stderr.read())
        acts = recache(tiny_model, data, tmp_path / f"w{i}" / clean.path.name)
        assert_same(acts, clean)


def test_two_processes_share_the_work_and_agree(tiny_model, data, clean, tmp_path):
    """Fails before: two processes on one folder both ran every forward pass (no lock), and
    with different shard sizes left the folder marked complete but unreadable. Now one waits
    for the other's lock and reuses its cache: 6 forward passes in all, and the folder equals
    a single-process run with the shard size of whichever came first."""
    root = tmp_path / "root"
    barrier = tmp_path / "ready"
    workers = [_worker(root, size, "barrier", str(barrier), slow=0.1) for size in (4, 8)]
    passes = []
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        passes.append(int(out.split()[-1]))
    assert sum(passes) == len(data) // 4, passes
    assert sorted(passes)[0] == 0, passes
    folder = root / clean.path.name
    size = json.loads((folder / MANIFEST).read_text())["shard_size"]
    reference = cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path / "ref", **{**KW, "shard_size": size}
    )
    assert_same(load_activation_set(folder, expect=clean.key, verify=True), reference)
