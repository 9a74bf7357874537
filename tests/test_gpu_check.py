"""experiments/gpu_check.py: it skips clearly without CUDA, refuses a CPU run without --quick,
and its CPU smoke run (--quick, tiny models) runs every step and writes the summary."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import gpu_check  # noqa: E402


def test_without_cuda_it_says_why_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "gpu_check skipped: no CUDA device here" in capsys.readouterr().out


def test_cpu_without_quick_is_refused(capsys):
    assert gpu_check.main(["--device", "cpu"]) == 2
    assert "pass --quick for a smoke run on the CPU" in capsys.readouterr().err


def test_quick_cpu_run_runs_every_step(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    steps = json.loads(out.read_text())["steps"]
    assert {name: s["status"] for name, s in steps.items()} == dict.fromkeys(steps, "ok")
    assert steps["probe_auroc"]["difference"] == 0  # the same float32 run twice on the CPU
    assert steps["patching"]["bench"]["max_abs_diff"] < 1e-4
    assert gpu_check.LLAMA8B_SHAPE not in gpu_check.list_models()  # nothing left registered
