"""Generate the replies of a new hand-labelling reference set (follow-up replies).

A reference set (see ``experiments/judge_accuracy.py``) is a folder with ``replies.jsonl``
(transcript format) and ``labels.jsonl`` (hand labels). This script writes the first: for
each condition of ``experiments/refusal_vs_rebuttal.py`` it draws ``--per-condition``
scenarios of the bank (``random.Random(seed)``, in the order natural, refusal, rebuttal), a
wording for the fixed conditions, and samples the model's reply to the follow-up turn with
that experiment's sampling settings and ``--seed``. The natural condition's first turns are
generated first (same seed; not labelled). It also writes ``to_label.jsonl``, the labelling
template of :func:`interp.text.judging.export_for_labelling`: fill in the four fields by hand,
reading the pressure, the first reply and the follow-up question, and save it as
``labels.jsonl``. Label before running any judge on the set, so that the labels cannot lean
on a judge's output.

Run: ``python experiments/make_reference_set.py --seed 2 --out interp/data/hand_labelled/seed2``
(default model, CPU: a few minutes). The logic is :mod:`interp.text.reference_set`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from interp.cli import run_cli
from interp.text.reference_set import ReferenceSetConfig, make_reference_set


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        ReferenceSetConfig,
        make_reference_set,
        argv,
        prog="python experiments/make_reference_set.py",
    )


if __name__ == "__main__":
    sys.exit(main())
