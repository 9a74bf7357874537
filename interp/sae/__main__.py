"""``python -m interp.sae --layer 14``: train (or reuse) an SAE and print its quality."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from interp.cli import run_cli
from interp.sae.config import SAEConfig
from interp.sae.store import LoadedSAE


def _train(config: SAEConfig) -> LoadedSAE:
    from interp.sae.train import train_sae  # loads torch, sae_lens and the model stack

    return train_sae(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        SAEConfig, _train, argv, prog="python -m interp.sae", report=lambda _, r: r.summary()
    )


if __name__ == "__main__":
    sys.exit(main())
