"""``python -m interp.sae --layer 14``: train (or reuse) an SAE and print its quality."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from interp.cli import run_cli
from interp.sae.config import SAEConfig
from interp.sae.store import LoadedSAE


def summary(loaded: LoadedSAE) -> str:
    m = loaded.manifest
    q = m.quality
    h, loss = q["heldout"], q["loss"]
    return "\n".join(
        [
            f"SAE {loaded.path} ({m.architecture}, d_sae {m.d_sae}) on {m.model_name} {m.hook}",
            f"trained on {m.n_train_tokens_unique} reply tokens of {m.n_train_transcripts} "
            f"transcripts in {m.train_seconds:.0f} s",
            f"held-out ({h['n_tokens']} tokens): explained variance {h['explained_variance']:.3f}, "
            f"L0 {h['l0']:.1f}, dead {h['dead_fraction']:.1%}",
            f"next-token loss on held-out replies: clean {loss['clean_loss']:.3f}, with SAE "
            f"{loss['sae_loss']:.3f} (+{loss['loss_increase']:.3f}), mean-ablated "
            f"{loss['mean_ablation_loss']:.3f}; loss recovered {loss['loss_recovered']:.1%}",
        ]
    )


def _train(config: SAEConfig) -> LoadedSAE:
    from interp.sae.train import train_sae  # loads torch, sae_lens and the model stack

    return train_sae(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        SAEConfig, _train, argv, prog="python -m interp.sae", report=lambda _, r: summary(r)
    )


if __name__ == "__main__":
    sys.exit(main())
