"""A patching sweep split over workers: parts merge into exactly the 1-process result."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interp.patching import (
    LogProbDiff,
    PatchError,
    PatchInput,
    Sweep,
    merge_parts,
    patch_sweep,
    split_sweep,
)
from interp.patching.parallel import run_part
from interp.workers import WorkerSplit

ROOT = Path(__file__).resolve().parents[1]
SITES = ("resid_pre", "resid_mid", "mlp_out")


def _inputs(tok):
    clean = PatchInput(tok("Please sell the old car today.", return_tensors="pt").input_ids[0])
    corrupt = PatchInput(tok("Please hide the old car today.", return_tensors="pt").input_ids[0])
    return clean, corrupt


def _sweep(model, layers=(0, 1)):
    source, target = _inputs(model.tokenizer)
    metric = LogProbDiff.from_text(model.tokenizer, "Sure, here it is", "I can't")
    return Sweep(
        model, target, metric, source_input=source, sites=SITES, layers=layers, batch_size=3
    )


@pytest.fixture
def reference(tiny_model):
    source, target = _inputs(tiny_model.tokenizer)
    metric = LogProbDiff.from_text(tiny_model.tokenizer, "Sure, here it is", "I can't")
    return patch_sweep(
        tiny_model,
        target,
        metric,
        source_input=source,
        sites=SITES,
        layers=(0, 1),
        batch_size=3,
        progress=False,
    )


def _count_chunks(monkeypatch):
    calls = {"n": 0}
    original = Sweep.run_chunk

    def counted(self, chunk):
        calls["n"] += 1
        return original(self, chunk)

    monkeypatch.setattr(Sweep, "run_chunk", counted)
    return calls


def test_two_workers_then_a_lone_merge_equal_one_process(
    tiny_model, reference, tmp_path, monkeypatch
):
    sweep = _sweep(tiny_model)
    assert len(sweep.chunks) >= 4  # both workers have passes to run
    calls = _count_chunks(monkeypatch)
    for rank in (0, 1):  # not under torchrun: a worker cannot wait for the other to merge
        assert split_sweep(sweep, tmp_path, rank=rank, world_size=2) is None
    assert calls["n"] == len(sweep.chunks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0-of-2.json", "part-1-of-2.json"]
    merged = split_sweep(_sweep(tiny_model), tmp_path)  # alone: computes nothing, merges
    assert calls["n"] == len(sweep.chunks)
    assert torch.equal(merged.values, reference.values)
    assert merged.to_dict() == reference.to_dict()


def test_a_crashed_worker_is_redone_alone_and_reruns_skip_parts(
    tiny_model, reference, tmp_path, monkeypatch
):
    sweep = _sweep(tiny_model)
    assert run_part(sweep, tmp_path, WorkerSplit(0, 2)) == list(range(0, len(sweep.chunks), 2))
    assert run_part(sweep, tmp_path, WorkerSplit(0, 2)) == []  # its part is on disk
    with pytest.raises(PatchError, match=r"forward passes are in no part yet .* run the sweep"):
        merge_parts(sweep, tmp_path)
    calls = _count_chunks(monkeypatch)
    merged = split_sweep(sweep, tmp_path)  # worker 1 crashed: the lone run does its share
    assert calls["n"] == len(range(1, len(sweep.chunks), 2))
    assert torch.equal(merged.values, reference.values)


def test_a_part_of_another_sweep_is_refused(tiny_model, tmp_path):
    run_part(_sweep(tiny_model, layers=(1,)), tmp_path, WorkerSplit(0, 2))
    with pytest.raises(
        PatchError,
        match=r"part-0-of-2.json was made with other settings "
        r"\(.*layers: saved \[1\], requested \[0, 1\].*part of another",
    ):
        split_sweep(_sweep(tiny_model), tmp_path)
    (tmp_path / "part-0-of-2.json").write_text("[1, 2]")
    with pytest.raises(PatchError, match="is not a part of a patching sweep"):
        merge_parts(_sweep(tiny_model), tmp_path)


# --- the experiment's command line ---------------------------------------------------------

_EXPERIMENT = ROOT / "experiments" / "patch_refusal_vs_rebuttal.py"
_ARGS = [
    "--model",
    "tiny-random",
    "--device",
    "cpu",
    "--scenarios",
    "1",
    "--layers",
    "0-1",
    "--per",
    "position",
    "--batch-size",
    "4",
    "--refusal-model",
    "none-such",
]


def _experiment():
    spec = importlib.util.spec_from_file_location("patch_experiment", _EXPERIMENT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being built
    spec.loader.exec_module(module)
    return module


def _in_context(out: Path) -> dict:
    """The in-context summary, less the time it took."""
    summary = json.loads((out / "results.json").read_text())["in_context"]
    del summary["mean_normalised"]["meta"]["seconds"]
    return summary


def test_cli_workers_then_a_lone_run_equal_one_process(tiny_model, tmp_path, capsys):
    experiment = _experiment()
    assert experiment.main([*_ARGS, "--out", str(tmp_path / "one")]) == 0
    split = tmp_path / "split"
    for rank in ("0", "1"):
        assert (
            experiment.main([*_ARGS, "--out", str(split), "--rank", rank, "--world-size", "2"]) == 0
        )
        assert not (split / "results.json").exists()
    assert "not merged: once every worker has ended, run the same command alone" in (
        capsys.readouterr().out
    )
    assert experiment.main([*_ARGS, "--out", str(split)]) == 0
    assert _in_context(split) == _in_context(tmp_path / "one")


def test_cli_refuses_a_half_split(capsys):
    assert _experiment().main([*_ARGS, "--rank", "1"]) != 0
    assert "error: give both --rank and --world-size" in capsys.readouterr().err


def test_torchrun_two_workers_equal_one_process(tiny_model, tmp_path):
    """A real 2-process torchrun with gloo on CPU (each process imports transformer-lens, so
    about 20 s on an idle 2-core CPU): worker 0 merges after the barrier."""
    experiment = _experiment()
    assert experiment.main([*_ARGS, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(_EXPERIMENT),
        *_ARGS,
        "--out",
        str(tmp_path / "two"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = sorted(p.name for p in (tmp_path / "two" / "in_context" / "parts").glob("*/*"))
    assert parts == ["part-0-of-2.json", "part-1-of-2.json"]
    one, two = _in_context(tmp_path / "one"), _in_context(tmp_path / "two")
    # another thread count may change the last bits of a float sum
    for a, b in zip(one["clean"], two["clean"], strict=True):
        assert a["target"] == pytest.approx(b["target"], abs=1e-5)
    got = torch.tensor(two["mean_normalised"]["values"])
    torch.testing.assert_close(
        got, torch.tensor(one["mean_normalised"]["values"]), atol=1e-4, rtol=1e-4
    )
