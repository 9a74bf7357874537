"""Activation patching between refusal and rebuttal, in context and across fine-tuned models.

The study is :mod:`interp.rebuttal.patching` (what it sweeps, the metric, the outputs, how to
split it over workers); this script is its command line:
``python experiments/patch_refusal_vs_rebuttal.py`` (``--help`` for the options; under
torchrun: ``torchrun --standalone --nproc-per-node 2 experiments/patch_refusal_vs_rebuttal.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from interp.cli import run_cli
from interp.rebuttal.patching import PatchExperimentConfig, run


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        PatchExperimentConfig, run, argv, prog="python experiments/patch_refusal_vs_rebuttal.py"
    )


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="clean source and target give the same")
        raise SystemExit(main())
