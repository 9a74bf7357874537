"""The judge interface: the :class:`Judge` base class and the registry (and
:class:`JudgeError`, defined with the verdicts in :mod:`interp.text.judging.verdict`).

A judge gives a :class:`~interp.text.judging.verdict.Verdict` per transcript and tallies the
verdicts and their notes in ``counts``. :data:`JUDGES` holds the judges by name ("rule",
"llm", "human"; each judge's module registers its own); :func:`make_judge` builds one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from interp.data.scenarios import Scenario
from interp.data.transcripts import Transcript
from interp.text.judging.verdict import JudgeError, Verdict, note_counts
from probes.registry import Registry


class Judge(ABC):
    """Gives a :class:`Verdict` per transcript. ``counts`` tallies, over every
    :meth:`judge_all` call, the verdicts judged and each kind of note (e.g. "empty reply")."""

    name: str = "judge"
    needs_scenario: bool = False

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @abstractmethod
    def judge(self, transcript: Transcript, scenario: Scenario | None) -> Verdict:
        """The verdict on ``transcript``'s reply (its last message)."""

    def _scenarios_for(
        self, transcripts: Sequence[Transcript], scenarios_by_id: Mapping[str, Scenario]
    ) -> list[Scenario | None]:
        found = [scenarios_by_id.get(t.group) for t in transcripts]
        if self.needs_scenario:
            missing = sorted(
                {t.group for t, s in zip(transcripts, found, strict=True) if s is None}
            )
            if missing:
                raise JudgeError(
                    f"the {self.name} judge needs each transcript's scenario, but no scenario "
                    f"has the id of group(s) {missing[:5]}"
                    f"{' and more' if len(missing) > 5 else ''}; pass the bank that made them"
                )
        return found

    def judge_all(
        self, transcripts: Sequence[Transcript], scenarios_by_id: Mapping[str, Scenario]
    ) -> list[Verdict]:
        """Verdicts in the order of ``transcripts``; a scenario is looked up by group."""
        scenarios = self._scenarios_for(transcripts, scenarios_by_id)
        verdicts = [self.judge(t, s) for t, s in zip(transcripts, scenarios, strict=True)]
        self._tally(verdicts)
        return verdicts

    def _tally(self, verdicts: Sequence[Verdict]) -> None:
        self.counts["judged"] += len(verdicts)
        self.counts.update(note_counts(verdicts))


#: Judges by name: what :func:`make_judge` calls with the judge's options. Each judge's module
#: registers its own (``rule.py`` "rule", ``llm.py`` "llm", ``human.py`` "human"); they are
#: imported on first use, so that this module imports none of them.
JUDGES: Registry[Callable[..., Judge]] = Registry(
    "judge",
    JudgeError,
    builtins=(
        "interp.text.judging.rule",
        "interp.text.judging.llm",
        "interp.text.judging.human",
    ),
)


def register_judge(name: str, factory: Callable[..., Judge]) -> Callable[..., Judge]:
    """Add a judge that ``make_judge(name, **options)`` builds as ``factory(**options)``; a
    name that is already taken raises :class:`JudgeError`."""
    return JUDGES.register(name, factory)


def make_judge(name: str, **options: Any) -> Judge:
    """The judge ``name``, built with its options; an unknown name raises :class:`JudgeError`
    listing the judges.

    - ``"rule"``: :class:`~interp.text.judging.rule.RuleJudge` (options: the cue lists);
    - ``"llm"``: :class:`~interp.text.judging.llm.LLMJudge` through
      :func:`~interp.text.judging.llm.llm_judge`: ``model`` (a loaded model, or a model spec
      loaded on ``device``), ``mode`` ("generate" or "choice"), ``max_new_tokens``,
      ``batch_size``, ``progress``;
    - ``"human"``: :class:`~interp.text.judging.human.HumanJudge`: ``labels`` (a filled-in
      export file, or verdicts by transcript id).
    """
    return JUDGES.get(name)(**options)
