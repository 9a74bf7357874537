"""Fine-tune a refusal-trained and a rebuttal-trained variant and compare them.

The study is :mod:`interp.rebuttal.finetune` (the data, the two strategies, the outputs);
this script is its command line: ``python experiments/finetune_refusal_vs_rebuttal.py``
(``--help`` for the options).
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.rebuttal.finetune import ExperimentConfig, run


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        ExperimentConfig, run, argv, prog="python experiments/finetune_refusal_vs_rebuttal.py"
    )


if __name__ == "__main__":
    raise SystemExit(main())
