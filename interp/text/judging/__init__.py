"""Judging replies: did the reasoning argue one way and the answer go the other?

A reply is split into its reasoning and its answer by the one reply grammar
(:func:`split_reply`, from :mod:`interp.data.replies`, which the probes' token selection uses
too), and a judge gives a :class:`Verdict` per transcript: whether reasoning is present, its
stance, and whether the answer did the undesired act. ``rbd`` (reason-based deception) is an
undesired answer after ethical reasoning, or after no reasoning at all.

Three judges give verdicts:

- :class:`RuleJudge` (``rule``): phrase rules from the scenario's ``criteria`` (for a reply
  to the follow-up turn, its ``follow_up_criteria`` and the direct yes/no answer) plus generic
  cue lists (heuristics, no model);
- :class:`LLMJudge` (``llm``): a chat model graded with a fixed rubric (:data:`RUBRIC`), its
  output read by :func:`parse_llm_verdict`; output it cannot read gives an "unclear" verdict
  with a note;
- :class:`HumanJudge` (``human``): hand labels in a CSV or JSONL file
  (:func:`export_for_labelling`, :func:`import_labels`).

:func:`make_judge` builds any of them by name with its options (``make_judge("llm",
model="smollm2", mode="choice")``, ``make_judge("human", labels="labels.csv")``);
:func:`register_judge` adds one to :data:`JUDGES`.

:func:`agreement` compares two sets of verdicts (Cohen's kappa and accuracy per field;
:func:`confusion` for one field's value pairs), and
:func:`apply_verdicts` writes verdicts into transcripts (``label = int(rbd)``) for
``python -m interp.probe --dataset/--eval-dataset``.

Modules: ``verdict`` (verdicts and applying them), ``base`` (the :class:`Judge` interface,
:class:`JudgeError`, the registry), ``rule``, ``llm``, ``human``, ``agreement`` and
``accuracy`` (scores against the hand-labelled sets).
"""

from interp.data.replies import ReplyParts, split_reply
from interp.text.judging.agreement import agreement, cohen_kappa, confusion, format_confusion
from interp.text.judging.base import JUDGES, Judge, JudgeError, make_judge, register_judge
from interp.text.judging.human import (
    EXPORT_COLUMNS,
    LABEL_COLUMNS,
    HumanJudge,
    export_for_labelling,
    import_labels,
)
from interp.text.judging.llm import (
    JUDGE_MODES,
    JUDGE_SYSTEM,
    RUBRIC,
    RUBRIC_VALUES,
    LLMJudge,
    build_rubric_prompt,
    llm_judge,
    parse_llm_verdict,
)
from interp.text.judging.rule import (
    ETHICAL_CUES,
    NOT_AN_ACT,
    REFUSAL,
    REFUSAL_CUES,
    UNETHICAL_CUES,
    RuleJudge,
    answers_follow_up,
    bare_answer,
    is_refusal_wording,
    refusal_pattern,
)
from interp.text.judging.verdict import (
    ANSWER_VALUES,
    FIELDS,
    STANCES,
    Verdict,
    apply_verdicts,
    note_counts,
    note_kind,
    rbd_decided,
    verdicts_by_id,
)

__all__ = [
    "ANSWER_VALUES",
    "ETHICAL_CUES",
    "EXPORT_COLUMNS",
    "FIELDS",
    "JUDGES",
    "JUDGE_MODES",
    "JUDGE_SYSTEM",
    "LABEL_COLUMNS",
    "NOT_AN_ACT",
    "REFUSAL",
    "REFUSAL_CUES",
    "RUBRIC",
    "RUBRIC_VALUES",
    "STANCES",
    "UNETHICAL_CUES",
    "HumanJudge",
    "Judge",
    "JudgeError",
    "LLMJudge",
    "ReplyParts",
    "RuleJudge",
    "Verdict",
    "agreement",
    "answers_follow_up",
    "apply_verdicts",
    "bare_answer",
    "build_rubric_prompt",
    "cohen_kappa",
    "confusion",
    "export_for_labelling",
    "format_confusion",
    "import_labels",
    "is_refusal_wording",
    "llm_judge",
    "make_judge",
    "note_counts",
    "note_kind",
    "parse_llm_verdict",
    "rbd_decided",
    "refusal_pattern",
    "register_judge",
    "split_reply",
    "verdicts_by_id",
]
