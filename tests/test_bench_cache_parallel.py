"""experiments/bench_cache_parallel.py end to end on the tiny model (mechanics, not timings).

It launches two real torchrun jobs (1 and 2 workers), each importing transformer-lens in every
process: about 40 s on an idle 2-core CPU, longer on a busy one. That is the cost of checking
the benchmark's own command line, so it is kept to one run of 16 transcripts.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench_cache_parallel.py"


def test_bench_cache_parallel(tmp_path, capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    out = tmp_path / "parallel.json"
    args = ["--n", "16", "--shard-size", "4", "--batch-size", "4", "--repeats", "1"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RATIO 1/2 workers: caching " in printed
    assert "caches bit-identical across worker counts: True" in printed
    data = json.loads(out.read_text())
    assert data["benchmark"] == "cache_parallel" and data["threads"] == 1
    assert data["bit_identical"] is True and len(data["runs"]) == 2
    assert set(data["median_s"]["caching_s"]) == {"1", "2"}
    assert main([*args, "--workers", "0,2"]) == 2
    assert "error: --workers must list worker counts >= 1" in capsys.readouterr().err
