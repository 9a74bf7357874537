"""``python -m interp.finetune --strategy rebuttal``: see :mod:`interp.finetune`."""

from __future__ import annotations

import sys

from interp.cli import run_cli
from interp.finetune.config import FinetuneConfig
from interp.finetune.train import finetune


def _report(config: FinetuneConfig, result) -> str:
    losses = result.losses
    return f"{result.name}: {result.path} (loss {losses[0]:.3f} -> {losses[-1]:.3f})"


def main(argv: list[str] | None = None) -> int:
    return run_cli(FinetuneConfig, finetune, argv, prog="python -m interp.finetune", report=_report)


if __name__ == "__main__":
    sys.exit(main())
