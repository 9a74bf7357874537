"""Smoke test of experiments/bench_probe_fit.py's --large path (the synthetic path is in
tests/test_benchmarks.py): layers measured on a subset, extrapolated, CPU seconds recorded."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench_probe_fit.py"


def test_large_subset_is_extrapolated(tmp_path, capsys):
    pytest.importorskip("sklearn")
    main = runpy.run_path(str(SCRIPT))["main"]
    out = tmp_path / "large.json"
    args = ["--large", "--large-layers", "6", "--large-rows", "96", "--large-dim", "12"]
    args += ["--measure-layers", "2", "--sk-layers", "1", "--repeats", "1", "--threads", "1"]
    assert main([*args, "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "RATIO sklearn/ours = " in text and "CPU ratio sklearn/ours (extrapolated) = " in text
    data = json.loads(out.read_text())
    assert data["layers_total"] == 6 and data["layers_ours"] == 2
    assert data["layers_sklearn"] == 1 and len(data["layers"]) == 1
    med, ext = data["median_total_s"], data["extrapolated_total_s"]
    assert ext["ours"] == pytest.approx(med["ours"] * 3)
    assert ext["sklearn"] == pytest.approx(med["sklearn"] * 6)
    cpu = data["median_cpu_s"]
    assert data["cpu_ratio_sklearn_over_ours"] == pytest.approx(cpu["sklearn"] / (cpu["ours"] / 2))
    assert len(data["cpu_totals_s"]["ours"]) == 1 and len(data["load_average"]) == 3
    assert data["same_c"] and data["max_abs_auroc_diff"] < 0.05
