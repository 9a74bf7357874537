"""Experiment: does a probe trained on teacher-forced transcripts track what the model itself
writes?

Takes a probe saved by ``python -m interp.probe`` (``--run`` folder and ``--layer``) and judged
generations in the transcript format (``judged.jsonl`` from
``experiments/refusal_vs_rebuttal.py``: ``label`` = the judge's rbd, ``meta.verdict`` the
judge's fields). Scores every reply token by token with the probe, reports the AUROC of the
reply's mean score against the judge's ``rbd`` and against ``answer_undesired`` (on replies the
judge could decide), and writes an HTML page of the replies where probe and judge disagree
most, each token coloured by its score.

Outputs under ``--out`` (default: beside ``--judged``): ``probe_vs_judge.json`` and
``disagreements.html``.

Run: ``python experiments/probe_generations.py --run cache/runs/smollm2-135m-instruct/
consistency-resid_post-answer-logistic-L14 --layer 14``. The logic is
:mod:`interp.probe.generations`.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.probe.generations import ProbeGenerationsConfig, probe_generations


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        ProbeGenerationsConfig,
        probe_generations,
        argv,
        prog="python experiments/probe_generations.py",
    )


if __name__ == "__main__":
    raise SystemExit(main())
