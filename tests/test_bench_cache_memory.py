"""experiments/bench_cache_memory.py on tiny inputs (mechanics, not memory figures): the caching
and fitting children, the out-of-core check under a real RLIMIT_DATA, the summary and report."""

from __future__ import annotations

import json
import resource
import runpy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench_cache_memory.py"


@pytest.fixture(scope="module")
def bench() -> dict:
    return runpy.run_path(str(BENCH))


def test_cache_then_fit_children(bench, tmp_path):
    config = bench["CacheMemoryConfig"](batch_size=8, device="cpu", threads=0)
    cache_out, fit_out = tmp_path / "cache.json", tmp_path / "fit.json"
    argv = bench["child_argv"](config, 120, cache_out, "cache", tmp_path / "kept")
    assert bench["main"](argv) == 0
    cached = json.loads(cache_out.read_text())
    assert cached["n_transcripts"] == 120 and cached["pooled_shape"] == [120, 64]
    folder = Path(cached["cache_folder"])
    assert folder.parent == tmp_path / "kept" and (folder / "manifest.json").is_file()
    assert bench["main"](bench["child_argv"](config, 120, fit_out, "fit", folder)) == 0
    fitted = json.loads(fit_out.read_text())
    assert fitted["streamed"] is True  # budget 0: the hook is streamed from disk
    assert fitted["chosen_c"] in (0.001, 0.01, 0.1, 1.0, 10.0) and fitted["n_scored"] > 0
    assert fitted["peak_rss_bytes"] >= fitted["baseline_peak_rss_bytes"] > 0


def test_out_of_core_fit_under_a_data_limit_equals_the_in_memory_fit(bench, tmp_path):
    """The limited child is a real subprocess: RLIMIT_DATA 1 GiB is set before torch loads."""
    folder, y = bench["write_synthetic_cache"](tmp_path, n=6000, d=16, shard_size=512, seed=2)
    assert len(list(folder.glob("shard-*.safetensors"))) == 12 and len(y) == 6000
    config = bench["CacheMemoryConfig"](device="cpu", threads=1, limit_gb=1.0)
    streamed = bench["spawn"](config, 6000, "big-streamed", tmp_path)
    # The fit ran under the limit (RLIMIT_DATA counts the private memory it could allocate);
    # peak RSS also counts file-backed pages (torch's libraries, the mapped shards), so it is
    # reported by the bench, not asserted here.
    assert streamed["rlimit_data_bytes"] == 1 << 30 and streamed["peak_rss_bytes"] > 0
    out = tmp_path / "reference.json"
    assert bench["main"](bench["child_argv"](config, 6000, out, "big-in-memory", tmp_path)) == 0
    assert resource.getrlimit(resource.RLIMIT_DATA)[0] != 1 << 30  # only the child was limited
    a = load_file(tmp_path / "streamed.safetensors")
    b = load_file(tmp_path / "in_memory.safetensors")
    assert float((a["logistic"] - b["logistic"]).norm()) < 1e-5
    assert float((a["mean_diff"] - b["mean_diff"]).norm()) < 1e-4
    assert abs(float(a["logistic"].norm()) - 1) < 1e-6 and not torch.equal(
        a["logistic"], a["mean_diff"]
    )


def test_summary_and_report(bench):
    config = bench["CacheMemoryConfig"](small=2000, large=20000)
    base = {"baseline_peak_rss_bytes": 500, "seconds": 1.0, "peak_reset": True}
    base |= {"model": "tiny-random", "hook": "blocks.0.hook_resid_post", "device": "cpu"}
    base |= {"torch_threads": 1}
    runs = {
        "small": [{**base, "peak_rss_bytes": 600 + k, "peak_increase_bytes": 100} for k in (0, 9)],
        "large": [{**base, "peak_rss_bytes": 660 + k, "peak_increase_bytes": 160} for k in (0, 9)],
    }
    summary = bench["summarise"](runs)
    assert summary["ratio_peak_large_over_small"] == pytest.approx(664.5 / 604.5)
    assert summary["ratio_large_over_small"] == pytest.approx(1.6)
    text = bench["report"](config, runs, summary, "fitting")
    assert "RATIO large/small = 1.10  (fitting: peak RSS, 20000 vs 2000 transcripts" in text
    assert bench["main"](["--big-gb", "-1"]) == 2


def test_bad_flags(bench, capsys):
    assert bench["main"](["--big-dim", "1"]) == 2
    assert "error: --big-dim must be >= 2" in capsys.readouterr().err
