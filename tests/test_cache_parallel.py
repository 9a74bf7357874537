"""Caching split over workers, finalize, batch budgets and the disk check.

The reference is one single-process run (24 transcripts, shards of 4, batches of 4: 6 shards,
through block 0 only); a cache written by workers must end bit-identical to it (every shard
file's bytes, so every number), whatever the number of workers and whichever died on the way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interp.cache import (
    MANIFEST,
    BatchBackoffWarning,
    CacheDiskError,
    CacheIncompleteError,
    CacheMemoryError,
    CacheRepairWarning,
    CacheRequest,
    cache_activations,
    finalize,
    load_activation_set,
    make_job,
    write_share,
)
from interp.cache.__main__ import main as cache_main
from interp.cache.budget import Budget, is_out_of_memory
from interp.data.transcripts import write_transcripts
from interp.hooks import hook_name
from interp.models import load_model
from interp.workers import WorkerSplit

HOOKS = [hook_name(0), hook_name(0, "resid_pre")]
N_ROWS = 24
KW = dict(batch_size=4, shard_size=4, progress=False)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(small_dataset):
    return small_dataset[:N_ROWS]


@pytest.fixture(scope="module")
def clean(tiny_model, data, tmp_path_factory):
    """The reference: one uninterrupted single-process run."""
    return cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path_factory.mktemp("clean"), **KW
    )


@pytest.fixture(scope="module")
def clean_block0(data, tmp_path_factory):
    """The reference of ``python -m interp.cache`` for HOOKS, which loads block 0 only."""
    model = load_model("tiny-random", device="cpu", max_layer=0)
    return cache_activations(model, data, HOOKS, cache_dir=tmp_path_factory.mktemp("b0"), **KW)


def shards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.safetensors"))}


def assert_same(folder: Path, clean) -> None:
    """Bit-identical to the single-process run: shard bytes, shard records (but for the file
    stamps, which name each folder's own files), every tensor."""
    assert shards(folder) == shards(clean.path)
    ours, theirs = (json.loads((f / MANIFEST).read_text()) for f in (folder, clean.path))
    assert [{**s, "stamp": None} for s in ours["shards"]] == [
        {**s, "stamp": None} for s in theirs["shards"]
    ]
    assert ours["status"] == "complete"
    assert not list(folder.glob("shard-*.json")), "pending shard records are left"
    acts = load_activation_set(folder, expect=clean.key, verify=True)
    for hook in HOOKS:
        assert torch.equal(acts[hook], clean[hook]), hook


def job(model, data, root: Path, **kwargs):
    return make_job(model, data, HOOKS, CacheRequest(cache_dir=root, **{**KW, **kwargs}))


# --- workers and finalize --------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [2, 4])
def test_workers_write_disjoint_shares_identical_to_one_process(
    tiny_model, data, clean, tmp_path, count_passes, world_size
):
    calls = count_passes(tiny_model)
    passes = []
    for rank in range(world_size):
        report = write_share(job(tiny_model, data, tmp_path), WorkerSplit(rank, world_size))
        passes.append(calls["n"] - sum(passes))
        assert report.written == report.assigned == len(range(rank, 6, world_size))
    assert passes == [len(range(k, 6, world_size)) for k in range(world_size)]  # 1 pass/shard
    folder = tmp_path / clean.path.name
    assert json.loads((folder / MANIFEST).read_text())["status"] == "incomplete"
    assert finalize(job(tiny_model, data, tmp_path)) == 6
    assert_same(folder, clean)
    assert calls["n"] == 6


def test_a_killed_worker_reruns_only_its_missing_shards(
    tiny_model, data, clean, tmp_path, monkeypatch, count_passes
):
    """Worker 1 of 2 (shards 1, 3, 5) dies in its second shard; finalize then names what is
    missing; the rerun of worker 1 writes shards 3 and 5 only, worker 0's rerun nothing."""
    write_share(job(tiny_model, data, tmp_path), WorkerSplit(0, 2))
    count_passes(tiny_model, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        write_share(job(tiny_model, data, tmp_path), WorkerSplit(1, 2))
    monkeypatch.undo()
    with pytest.raises(CacheIncompleteError, match=r"2 of 6 shards .*shard-00003.*shard-00005"):
        finalize(job(tiny_model, data, tmp_path))
    calls = count_passes(tiny_model)
    assert write_share(job(tiny_model, data, tmp_path), WorkerSplit(0, 2)).written == 0
    assert write_share(job(tiny_model, data, tmp_path), WorkerSplit(1, 2)).written == 2
    assert calls["n"] == 2
    finalize(job(tiny_model, data, tmp_path))
    assert_same(tmp_path / clean.path.name, clean)


def test_finalize_is_idempotent_and_refuses_a_shard_of_another_key(
    tiny_model, data, clean, tmp_path, count_passes
):
    with pytest.raises(CacheIncompleteError, match="holds no shard of this cache yet"):
        finalize(job(tiny_model, data, tmp_path))
    # The same transcripts and shard plan stored in float16: another key, same rows.
    other = cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path / "other", dtype=torch.float16, **KW
    )
    for rank in range(2):
        write_share(job(tiny_model, data, tmp_path), WorkerSplit(rank, 2))
    folder = tmp_path / clean.path.name
    shutil.copyfile(other.path / "shard-00002.safetensors", folder / "shard-00002.safetensors")
    record = json.loads((other.path / MANIFEST).read_text())["shards"][2]
    (folder / "shard-00002.json").write_text(json.dumps(record))  # its own, valid record
    with (
        pytest.warns(CacheRepairWarning, match=r"shard-00002.safetensors was made for the cache"),
        pytest.raises(CacheIncompleteError, match=r"1 of 6 shards .*shard-00002"),
    ):
        finalize(job(tiny_model, data, tmp_path))
    calls = count_passes(tiny_model)
    assert write_share(job(tiny_model, data, tmp_path), WorkerSplit(0, 2)).written == 1
    assert calls["n"] == 1
    assert finalize(job(tiny_model, data, tmp_path)) == 6
    manifest = (folder / MANIFEST).read_bytes()
    assert finalize(job(tiny_model, data, tmp_path)) == 6  # again: checks, changes nothing
    assert (folder / MANIFEST).read_bytes() == manifest
    assert calls["n"] == 1
    assert_same(folder, clean)


def test_workers_of_a_complete_cache_do_nothing(tiny_model, data, clean, tmp_path, count_passes):
    folder = tmp_path / clean.path.name
    shutil.copytree(clean.path, folder)
    calls = count_passes(tiny_model)
    report = write_share(job(tiny_model, data, tmp_path), WorkerSplit(1, 2))
    assert (report.written, calls["n"]) == (0, 0)
    assert_same(folder, clean)


def _torchrun(dataset: Path, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"),
        *("-m", "interp.cache", "--model", "tiny-random", "--device", "cpu"),
        *("--dataset", str(dataset), "--hooks", ",".join(HOOKS), "--cache-dir", str(root)),
        *("--batch-size", "4", "--shard-size", "4", "--no-progress", "--debug"),
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)


def test_torchrun_two_workers_equal_one_process(data, clean_block0, tmp_path):
    """A real 2-process torchrun with gloo on CPU (about 20 s on an idle 2-core CPU: each
    process imports transformer-lens): worker 0 finalizes after the barrier, and the cache
    equals the single-process one bit for bit."""
    dataset = tmp_path / "data.jsonl"
    write_transcripts(dataset, data)
    done = _torchrun(dataset, tmp_path / "root")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker 0 of 2 (torchrun ($RANK)): wrote 3 of its 3 shards" in done.stdout
    assert "worker 1 of 2 (torchrun ($RANK)): wrote 3 of its 3 shards" in done.stdout
    assert "cache complete: 24 transcripts in 6 shards" in done.stdout
    assert_same(tmp_path / "root" / "activations" / clean_block0.path.name, clean_block0)


# --- the command line and the probe ----------------------------------------------------------


def test_each_torchrun_worker_of_a_node_takes_its_own_gpu(monkeypatch):
    from interp.cache.config import CacheConfig
    from interp.cache.parallel import worker_device

    torchrun = {"RANK": "5", "WORLD_SIZE": "8", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    for name, value in {**torchrun, "LOCAL_RANK": "5"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert worker_device(CacheConfig(layers=(1,))) == "cuda:1"
    assert worker_device(CacheConfig(layers=(1,), device="cuda")) == "cuda:1"
    assert worker_device(CacheConfig(layers=(1,), device="cpu")) == "cpu"
    monkeypatch.delenv("MASTER_ADDR")  # not torchrun: the device as given
    assert worker_device(CacheConfig(layers=(1,))) == "auto"


@pytest.mark.parametrize("layer", [0, 1])
def test_cli_cache_is_reused_by_the_probe(tmp_path, layer, capsys):
    """``python -m interp.cache --layers L`` asks for the probe's cache, loading blocks up to L
    as the probe does (L=0: fewer blocks than the model has): the probe then finds every
    activation it needs in that folder and writes no other."""
    from interp.probe.config import ProbeConfig
    from interp.probe.pipeline import train_probe

    common = ["--model", "tiny-random", "--max-scenarios", "4", "--cache-dir", str(tmp_path)]
    assert cache_main([*common, "--layers", str(layer), "--device", "cpu", "--no-progress"]) == 0
    assert "cache complete" in capsys.readouterr().out
    folders = sorted(p.name for p in (tmp_path / "activations").iterdir())
    assert len(folders) == 1
    config = ProbeConfig(
        model="tiny-random",
        layers=layer,
        max_scenarios=4,
        control_dataset=None,
        device="cpu",
        cache_dir=str(tmp_path),
        progress=False,
    )
    train_probe(config)
    assert sorted(p.name for p in (tmp_path / "activations").iterdir()) == folders


def test_cli_refuses_a_config_without_hooks(capsys):
    assert cache_main(["--model", "tiny-random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: give either --layers") and "Traceback" not in err


# --- batch budgets and out-of-memory back-off ------------------------------------------------


def test_budget_caps_transcripts_and_padded_tokens():
    assert Budget(4).take([10, 20, 30, 40, 50]) == 4
    assert Budget(8, batch_tokens=90).take([10, 20, 30, 40]) == 3  # 3 x 30 = 90
    assert Budget(8, batch_tokens=90).take([100, 100]) == 1  # one row even over the budget
    with pytest.raises(ValueError, match="batch_tokens must be an integer >= 1"):
        Budget(4, batch_tokens=0)


def test_token_budget_keeps_the_plan_and_the_numbers(tiny_model, data, clean, tmp_path):
    """Batches cut by tokens group a shard's rows differently, never move rows between
    shards; left padding keeps each row's vector within float rounding."""
    acts = cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path, batch_tokens=300, **{**KW, "batch_size": 16}
    )
    ours, theirs = (json.loads((a.path / MANIFEST).read_text()) for a in (acts, clean))
    assert [s["rows"] for s in ours["shards"]] == [s["rows"] for s in theirs["shards"]]
    for hook in HOOKS:
        torch.testing.assert_close(acts[hook], clean[hook], atol=1e-5, rtol=1e-5)


def _failing_above(model, monkeypatch, rows: int, error: Exception) -> dict[str, list[int]]:
    """Make every pass of more than ``rows`` transcripts raise ``error``; records batch sizes."""
    seen: dict[str, list[int]] = {"ok": [], "failed": []}
    original = model.bridge.run_with_cache

    def run(ids, **kwargs):
        if ids.shape[0] > rows:
            seen["failed"].append(ids.shape[0])
            raise error
        seen["ok"].append(ids.shape[0])
        return original(ids, **kwargs)

    monkeypatch.setattr(model.bridge, "run_with_cache", run)
    return seen


def test_out_of_memory_halves_the_batch_and_goes_on(tiny_model, data, clean, tmp_path, monkeypatch):
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    seen = _failing_above(tiny_model, monkeypatch, 1, oom)
    with pytest.warns(BatchBackoffWarning, match="out of memory on a batch of 4 transcripts"):
        acts = cache_activations(tiny_model, data, HOOKS, cache_dir=tmp_path, **KW)
    assert seen["failed"] == [4, 2]  # halved twice, then kept at 1 for the rest of the run
    assert seen["ok"] == [1] * N_ROWS
    for hook in HOOKS:
        torch.testing.assert_close(acts[hook], clean[hook], atol=1e-5, rtol=1e-5)


def test_out_of_memory_on_one_transcript_says_what_to_lower(
    tiny_model, data, tmp_path, monkeypatch
):
    cpu_oom = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")
    assert is_out_of_memory(cpu_oom) and not is_out_of_memory(RuntimeError("shape mismatch"))
    _failing_above(tiny_model, monkeypatch, 0, cpu_oom)
    with (
        pytest.warns(BatchBackoffWarning),
        pytest.raises(CacheMemoryError, match=r"a single transcript of \d+ tokens .*max_tokens"),
    ):
        cache_activations(tiny_model, data[:4], HOOKS, cache_dir=tmp_path, **KW)


def test_other_errors_are_not_taken_for_out_of_memory(tiny_model, data, tmp_path, monkeypatch):
    _failing_above(tiny_model, monkeypatch, 0, RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cache_activations(tiny_model, data[:4], HOOKS, cache_dir=tmp_path, **KW)


# --- disk ------------------------------------------------------------------------------------


def test_per_token_cache_states_its_disk_use_first(tiny_model, data, tmp_path, capsys):
    acts = cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path, per_token=True, **{**KW, "progress": True}
    )
    err = capsys.readouterr().err
    n_tokens = int(acts.n_selected.sum())
    assert f"per-token cache: {n_tokens} tokens x 2 hook(s) x {tiny_model.d_model} values" in err
    estimate = float(err.split("about ")[1].split(" KiB")[0]) * 1024
    stored = sum(
        t.numel() * t.element_size()
        for p in acts.path.glob("shard-*.safetensors")
        for t in load_file(p).values()
    )
    assert abs(estimate - stored) / stored < 0.02, (estimate, stored)


def test_per_token_shards_cut_by_tokens_hold_the_same_vectors(tiny_model, data, tmp_path):
    """``shard_tokens`` bounds the selected tokens of a shard (its memory before it is
    written): shards are cut earlier, the vectors are those of shards cut by count."""
    by_count = cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path / "a", per_token=True, **KW
    )
    by_tokens = cache_activations(
        tiny_model, data, HOOKS, cache_dir=tmp_path / "b", per_token=True, shard_tokens=60, **KW
    )
    manifest = json.loads((by_tokens.path / MANIFEST).read_text())
    assert manifest["shard_tokens"] == 60 and len(manifest["shards"]) > 6
    n_selected = by_tokens.n_selected.tolist()
    for record in manifest["shards"]:
        tokens = sum(n_selected[r] for r in record["rows"])
        assert len(record["rows"]) <= 4 and (tokens <= 60 or len(record["rows"]) == 1)
    for hook in HOOKS:
        torch.testing.assert_close(by_tokens[hook], by_count[hook], atol=1e-5, rtol=1e-5)
        for ours, theirs in zip(by_tokens.per_token(hook), by_count.per_token(hook), strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_a_cache_larger_than_the_free_disk_is_refused_before_any_pass(
    tiny_model, data, tmp_path, monkeypatch, count_passes
):
    import interp.cache.budget as budget

    free = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr(budget.shutil, "disk_usage", lambda path: free)
    calls = count_passes(tiny_model)
    with pytest.raises(CacheDiskError, match=r"needs about .* but .* has 1000 B free"):
        cache_activations(tiny_model, data, HOOKS, cache_dir=tmp_path, per_token=True, **KW)
    assert calls["n"] == 0
