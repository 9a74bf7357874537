"""experiments/bench_generation.py end to end on the tiny model (mechanics, not timings)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench_generation.py"


def test_bench_generation_tiny(tmp_path, capsys):
    script = runpy.run_path(str(SCRIPT))
    out = tmp_path / "generation.json"
    args = ["--model", "tiny-random", "--prompts", "3", "--batch-size", "2"]
    args += ["--max-new-tokens", "3", "--repeats", "1", "--device", "cpu", "--out", str(out)]
    assert script["main"](args) == 0
    printed = capsys.readouterr().out
    assert "RATIO interp/hf = " in printed and "RATIO interp/bridge = " in printed
    assert "replies of the three paths: identical" in printed
    data = json.loads(out.read_text())
    assert data["benchmark"] == "generation" and "transformers" in data["versions"]
    assert data["config"]["out"] == str(out) and data["config"]["max_new_tokens"] == 3
    for key in ("times_s", "cpu_times_s", "median_cpu_s"):
        assert set(data[key]) == {"hf", "interp", "bridge"}
    assert all(len(v) == 1 for v in [*data["times_s"].values(), *data["cpu_times_s"].values()])
    assert data["cpu_ratio_interp_over_hf"] > 0
    assert data["n_prompts"] == 3 and data["n_batches"] == 2
    assert data["new_tokens"] == 9  # the random model never ends its turn within 3 tokens
    assert data["replies_identical"] is True
    assert data["differing_prompts"] == {"interp": [], "bridge": []}
    assert data["generation"]["temperature"] == 0.0


def test_bench_generation_summary_flags_differing_replies():
    script = runpy.run_path(str(SCRIPT))
    reply = script["Reply"]
    same = {"a": reply("x", 2, "eos"), "b": reply("y", 3, "length")}
    replies = {"hf": same, "interp": dict(same), "bridge": {**same, "b": reply("z", 3, "length")}}
    wall = {"hf": [1.0, 3.0, 2.0], "interp": [2.0], "bridge": [4.0]}
    cpu = {"hf": [1.0], "interp": [0.5], "bridge": [2.0]}
    summary = script["summarise"]({"wall": wall, "cpu": cpu}, replies)
    assert summary["new_tokens"] == 5
    assert summary["tokens_per_s"] == {"hf": 2.5, "interp": 2.5, "bridge": 1.25}
    assert summary["ratio_interp_over_hf"] == 1.0 and summary["ratio_interp_over_bridge"] == 2.0
    assert summary["cpu_ratio_interp_over_hf"] == 2.0
    assert summary["cpu_ratio_interp_over_bridge"] == 4.0
    assert summary["replies_identical"] is False
    assert summary["differing_prompts"] == {"interp": [], "bridge": ["b"]}


def test_bench_generation_bad_flags(capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--repeats", "0"]) == 2
    assert "error: --repeats must be >= 1" in capsys.readouterr().err
    assert main(["--prompts", "49"]) == 2
    assert "builtin:consistency has 48 scenarios" in capsys.readouterr().err
