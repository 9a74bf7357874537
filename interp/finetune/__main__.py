"""``python -m interp.finetune --strategy rebuttal``: see :mod:`interp.finetune`."""

from __future__ import annotations

import sys

from interp.cli import config_from_args, parser_for
from interp.finetune.config import FinetuneConfig, FinetuneError
from interp.finetune.train import finetune


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(FinetuneConfig, prog="python -m interp.finetune")
    args = parser.parse_args(argv)
    try:
        result = finetune(config_from_args(FinetuneConfig, args))
    except FinetuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    losses = result.losses
    print(f"{result.name}: {result.path} (loss {losses[0]:.3f} -> {losses[-1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
