"""The judge interface: the :class:`Judge` base class, :class:`JudgeError` and the registry.

A judge gives a :class:`~interp.text.judging.verdict.Verdict` per transcript and tallies the
verdicts and their notes in ``counts``. :data:`JUDGES` holds the judges that need no model by
name (each judge's module registers itself); :func:`make_judge` builds one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp.data.scenarios import Scenario
from interp.data.transcripts import Transcript

if TYPE_CHECKING:
    from interp.text.judging.verdict import Verdict


class JudgeError(ValueError):
    """A judge that cannot run (unknown name, missing scenario) or a bad label file."""


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
        # Imported here: verdict.py imports JudgeError from this module.
        from interp.text.judging.verdict import note_counts

        self.counts["judged"] += len(verdicts)
        self.counts.update(note_counts(verdicts))


#: Judges that need no model, by name; see :func:`make_judge`. Filled in by the judges'
#: modules (``rule.py`` adds "rule"), so that this module imports none of them.
JUDGES: dict[str, Callable[..., Judge]] = {}


def make_judge(name: str, **kwargs: Any) -> Judge:
    if name not in JUDGES:
        raise JudgeError(f"unknown judge {name!r}; choose one of {', '.join(sorted(JUDGES))}")
    return JUDGES[name](**kwargs)
