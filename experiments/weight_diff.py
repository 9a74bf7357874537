"""Experiment: where do fine-tuned variants' weights differ from their base, and do the
changes line up with a probe direction?

For each ``--variant`` it compares every projection matrix of every layer with ``--base``
(:func:`interp.finetune.weight_diff.weight_diff`: norm, relative norm, effective rank, top singular
values and, with ``--probe``, the |cos| between the probe direction and the top singular
directions on the residual-stream side), prints the matrices that changed most and writes
``<out>/<variant>/weight_diff.json``, ``table.txt`` and ``weight_diff.html`` (heatmaps layer x
matrix). ``--out`` defaults to ``<cache>/experiments/weight_diff``.

Run: ``python experiments/weight_diff.py --variant smollm2-rebuttal smollm2-refusal
--probe cache/runs/smollm2-135m-instruct/consistency-resid_post-answer-logistic-L14/probes/L14``.
The logic is :mod:`interp.finetune.weight_diff_report`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from interp.cli import run_cli
from interp.finetune.weight_diff_report import WeightDiffConfig, run_weight_diff


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        WeightDiffConfig, run_weight_diff, argv, prog="python experiments/weight_diff.py"
    )


if __name__ == "__main__":
    sys.exit(main())
