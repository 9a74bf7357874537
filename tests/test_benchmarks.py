"""The benchmark scripts end to end on the tiny model (mechanics, not timings): each runs
through its config and run_cli, prints its ratio and writes one result file with its settings,
library versions and threads (interp.benchmarks.write_result)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch

from interp.benchmarks import timed, write_result

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _script(name: str) -> dict:
    return runpy.run_path(str(EXPERIMENTS / f"{name}.py"))


def _saved(path: Path, name: str) -> dict:
    data = json.loads(path.read_text())
    assert data["benchmark"] == name and "torch" in data["versions"]
    assert data["config"]["out"] == str(path)
    return data


def test_write_result_records_settings_versions_and_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    path = write_result("demo", {"n": 2, "child": 1, "out": None}, {"times_s": [0.5]}, threads=3)
    assert path == tmp_path / "benchmarks" / "demo.json"
    data = json.loads(path.read_text())
    assert data["config"] == {"n": 2, "out": None}  # a child's internal flags are left out
    assert data["times_s"] == [0.5] and data["threads"] == 3
    assert {"python", "torch"} <= set(data["versions"]) and data["platform"] and data["time"]
    assert timed(lambda: None, torch.device("cpu")) >= 0


def test_bench_cache_speed(tmp_path, capsys):
    main = _script("bench_cache_speed")["main"]
    out = tmp_path / "speed.json"
    args = ["--model", "tiny-random", "--layer", "0", "--n", "2", "--batch-size", "2"]
    assert main([*args, "--repeats", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert "RATIO cache/HF = " in capsys.readouterr().out
    data = _saved(out, "cache_speed")
    assert set(data["median_s"]) == {"hf_forward", "bridge_cache", "cache_activations"}
    assert data["agreement"]["max_abs_diff_real_tokens"] < 1e-4
    assert main([*args, "--n", "0"]) == 2
    assert "error: --n must be >= 1" in capsys.readouterr().err


def test_bench_cache_memory_child_and_summary(tmp_path, capsys):
    script = _script("bench_cache_memory")
    config = script["CacheMemoryConfig"](
        small=2, large=3, batch_size=2, device="cpu", threads=0, out=str(tmp_path / "m.json")
    )
    # What a child receives is the parent's config for one size.
    child_out = tmp_path / "child.json"
    argv = script["child_argv"](config, 2, child_out)
    assert script["main"](argv) == 0
    result = json.loads(child_out.read_text())
    assert result["n_transcripts"] == 2 and result["hook"] == "blocks.0.hook_resid_post"
    runs = {"small": [result], "large": [{**result, "peak_increase_bytes": 2 * 1024 * 1024}]}
    summary = script["summarise"](runs)
    text = script["report"](config, runs, summary)
    assert "RATIO large/small = " in text and "3 vs 2 transcripts" in text
    assert script["main"](["--repeats", "0"]) == 2
    assert "error: --repeats must be >= 1" in capsys.readouterr().err


def test_bench_probe_fit_synthetic(tmp_path, capsys):
    pytest.importorskip("sklearn")
    main = _script("bench_probe_fit")["main"]
    out = tmp_path / "fit.json"
    args = ["--synthetic", "--synthetic-layers", "2", "--synthetic-dim", "16", "--repeats", "1"]
    assert main([*args, "--device", "cpu", "--out", str(out)]) == 0
    assert "RATIO sklearn/ours = " in capsys.readouterr().out
    data = _saved(out, "probe_fit_synthetic")
    assert [r["features"] for r in data["layers"]] == ["synthetic.0", "synthetic.1"]
    assert data["max_abs_auroc_diff"] < 0.05 and "sklearn" in data["versions"]


def test_bench_patching(tmp_path, capsys):
    main = _script("bench_patching")["main"]
    out = tmp_path / "patching.json"
    args = ["--model", "tiny-random", "--sites", "resid_pre", "--layers", "0", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    assert "RATIO transformer_lens / interp = " in capsys.readouterr().out
    data = _saved(out, "patching")
    assert data["layers"] == [0] and data["max_abs_diff"] < 1e-4
    assert main([*args, "--layers", "0-1:x"]) == 2
    assert "cannot read the step of layers '0-1:x'" in capsys.readouterr().err
