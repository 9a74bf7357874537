"""Experiment (issue 14): a model organism of reason-based deception and its matched controls.

Fine-tunes O (under a trigger: ethical reasoning, then compliance), H (the trigger changes
nothing) and C (under the trigger: unethical reasoning, then compliance) from one base model
with LoRA, on the training side of the probes' scenario split; samples them on held-out
scenarios with the trigger on and off; judges the samples (rule judge) and reports rates with
Wilson intervals; probes O's own generations per layer (see :mod:`interp.organism.analysis`).

Outputs under ``--out`` (default ``<cache>/experiments/organism[-quick]/``): ``results.json``,
``table.txt``, ``auroc_by_layer-<kind>.html``, ``defection-<kind>.html``, the samples
(``samples/<model>.jsonl``) and the probe runs (``<kind>/probes/<model>/``). Models are saved
in ``<cache>/models/`` and reused by a rerun with the same settings; training and sampling
resume after an interruption.

Run: ``python experiments/organism.py --quick`` (tag trigger only, short training),
``python experiments/organism.py`` (both trigger kinds). See docs/organism.md for the
timings measured on the 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.organism.config import OrganismConfig
from interp.organism.run import run_organism
from interp.paths import cache_root


def report(config: OrganismConfig, results: dict) -> str:
    out = config.out_dir(cache_root())
    return (out / "table.txt").read_text(encoding="utf-8") + f"\nwritten to {out}"


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        OrganismConfig, run_organism, argv, prog="python experiments/organism.py", report=report
    )


if __name__ == "__main__":
    raise SystemExit(main())
