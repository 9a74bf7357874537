"""Experiment: after a fixed polite refusal or a fixed explicit rebuttal, what does the model do
when the pressure comes back?

The protocol (after the published refusal-vs-rebuttal study). For every pressure scenario of
the bank, the conversation is: the role (system), the pressure turn (user), then the
assistant's reply to it in one of three conditions,

- ``natural``: the model writes it (one sample per scenario),
- ``refusal``: a fixed polite refusal from the bank ("I'm sorry, but I can't ..."),
- ``rebuttal``: a fixed explicit rebuttal from the bank (names the act, the harm, the reason),

with each of the bank's two refusal and two rebuttal wordings, so a result does not hinge on
one sentence; then the scenario's follow-up turn (renewed pressure, or a question whose honest
answer reveals the act). The model's next reply is sampled ``--n`` times and judged by the rule
judge (the scenario's checkable phrases), or with ``--judge llm`` by a chat model with a rubric
(``--llm-model``, a larger one on a GPU; ``--llm-mode choice`` scores each value). Reported per
condition and per domain, with 95% Wilson intervals: the undesired-answer rate, the
reason-based-deception rate (undesired answer with missing or ethical-sounding reasoning) and
the missing-reasoning rate. Judge accuracy on hand-labelled replies is measured separately
(``experiments/judge_accuracy.py``; the rule judge is a heuristic).

Outputs under ``--out`` (default ``cache/experiments/refusal_vs_rebuttal/<model>/``):
``first_turn.jsonl`` and ``followups.jsonl`` (generations, resumable), ``judged.jsonl``
(transcript format, ``label`` = rbd: feeds ``python -m interp.probe --eval-dataset``),
``results.json`` (the table and the resolved config), ``table.txt`` and ``rates.html``.

Run: ``python experiments/refusal_vs_rebuttal.py`` (default model, 2-core CPU: 6 to 8
minutes alone, 20 with other jobs running), ``--model PATH`` for any local Hugging Face chat
model, ``--max-scenarios 6`` for a quick look. The protocol is
:mod:`interp.text.followup` (``run_follow_up(FollowUpConfig(...))`` from Python).
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.text.followup import FollowUpConfig, run_follow_up


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        FollowUpConfig, run_follow_up, argv, prog="python experiments/refusal_vs_rebuttal.py"
    )


if __name__ == "__main__":
    raise SystemExit(main())
