"""Smoke test of experiments/bench_verify_cost.py (mechanics, not timings): on a tiny synthetic
cache it times every mode, prints the ratios against checksums off and writes its result."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench_verify_cost.py"


def test_bench_verify_cost_synthetic(tmp_path, capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    out = tmp_path / "verify.json"
    args = ["--gib", "0.001", "--dim", "16", "--shard-rows", "1000", "--repeats", "1"]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "RATIO read_all/default = " in text and "RATIO reuse/copied = " in text
    data = json.loads(out.read_text())
    assert data["benchmark"] == "verify_cost" and data["kind"] == "synthetic"
    assert data["shards"] == 9 and data["bytes"] > 2**20
    assert set(data["ratios"]) >= {"open/default", "read_one/full", "read_all/default"}
    assert all(v > 0 for v in data["median_s"].values())
    assert {"blake2b", "xxh3_128", "read_bytes"} == set(data["gib_per_s"])
    assert main(["--folder", str(tmp_path)]) == 2
    assert "is not a cache folder (no manifest.json)" in capsys.readouterr().err
