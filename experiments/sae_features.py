"""Experiment: SAE features of reason-based deception on the default model (issue 5).

1. Train (or reuse) a TopK SAE at layer 14 (:func:`interp.sae.train_sae`) on per-token reply
   activations of the role-play transcripts (training scenarios only) and benign chat, and
   report its quality (explained variance, L0, dead features, next-token loss increase).
2. Rank features by AUROC of divergent vs consistent answers on the probes' training
   scenarios, score them on the held-out ones, compare sparse probes on the top-k features
   with the dense probe, and write an HTML dashboard of the top features.
3. Ablate (scale 0) and amplify (``--amplify``) the top features during forward passes over
   held-out prompts cut after ``Answer:``; measure the change of log p(comply) - log p(refuse)
   and of the dense probe's score.
4. With ``--models`` (default: fine-tuned variants found under ``<cache>/models/`` whose name
   holds ``-refusal-`` or ``-rebuttal-``), apply the same SAE to each model on held-out
   transcripts and report the features whose mean activation changed most.

Writes ``results.json``, ``config.json``, ``summary.txt``, three figures (HTML) and
``dashboard/`` under ``--out`` (default ``<cache>/experiments/sae_features``).

Run: ``python experiments/sae_features.py`` (SAE flags as for ``python -m interp.sae``).
The logic is :mod:`interp.sae.experiment`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from interp.cli import run_cli
from interp.sae.experiment import SAEFeaturesConfig, run_sae_features


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        SAEFeaturesConfig, run_sae_features, argv, prog="python experiments/sae_features.py"
    )


if __name__ == "__main__":
    sys.exit(main())
