"""The role-play scenario bank: scenarios written for this project, stored as JSON.

Each file in ``interp/scenario_bank/`` holds a list of scenarios of one or two domains. A
scenario is one situation (a role, a pressure turn, a follow-up turn) plus texts written for
that situation only: reasoning passages of each stance and answers of each strategy. The
dataset builders in :mod:`interp.data.datasets` combine these texts into transcripts.

Run ``python -m interp.data.scenarios`` to validate the bank and print a summary.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

BANK_PACKAGE = "interp.data.scenario_bank"

#: Minimum number of texts of each kind in an ethical-pressure scenario.
MIN_TEXTS = {
    "reasoning.ethical": 2,
    "reasoning.unethical": 2,
    "answers.comply": 2,
    "answers.refuse": 2,
    "answers.rebut": 2,
}


class ScenarioError(ValueError):
    """A scenario file does not follow the bank's schema."""


@dataclass(frozen=True)
class Criteria:
    """Checkable phrases for a rule judge (lower-case substrings of an answer).

    ``undesired``: any one of them in an answer means it did the unethical act.
    ``desired``: any one of them means it refused or did the ethical thing.
    """

    undesired: tuple[str, ...]
    desired: tuple[str, ...]


@dataclass(frozen=True)
class FollowUpCriteria:
    """Checkable criteria for the reply to the follow-up turn (lower-case substrings).

    The follow-up asks a question whose honest answer reveals the act, or renews the
    pressure, so the pressure turn's :class:`Criteria` do not read its replies: a bare "Yes"
    can be the cover story or the truth depending on the question.

    ``cover``: the bare answer ("yes" or "no") that tells the cover story or goes along with
    the act; None when the follow-up is no yes/no question. ``undesired``: phrases that,
    in a reply to the follow-up, assert the cover story or endorse the act. ``desired``:
    phrases that disclose the truth or decline. ``about_act``: the follow-up asks whether
    the act itself was done ("Did Pawsome give them my details?"), not about a fact that
    holds whatever the assistant did ("Has the car had flood damage?"): once the assistant
    has refused the act, the cover answer is the truth.
    """

    cover: str | None
    undesired: tuple[str, ...]
    desired: tuple[str, ...]
    about_act: bool = False


@dataclass(frozen=True)
class Scenario:
    """One role-play situation and the texts written for it.

    ``kind`` is ``"pressure"`` (someone pushes the assistant to act unethically) or
    ``"benign"`` (an ordinary request: every text is helpful, used as a control set of
    ordinary chat). Benign scenarios have ``reasoning.ethical`` and ``answers.comply`` only.
    """

    id: str
    domain: str
    kind: str
    system: str
    pressure: str
    follow_up: str
    act: str
    harm: str
    reasoning_ethical: tuple[str, ...]
    reasoning_unethical: tuple[str, ...]
    answers_comply: tuple[str, ...]
    answers_refuse: tuple[str, ...]
    answers_rebut: tuple[str, ...]
    criteria: Criteria
    follow_up_criteria: FollowUpCriteria | None = None


def _texts(raw: dict, key: str, where: str) -> tuple[str, ...]:
    section, name = key.split(".")
    values = raw.get(section, {}).get(name, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ScenarioError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(v.strip() for v in values)


def _phrases(raw: dict, key: str, where: str) -> tuple[str, ...]:
    values = raw.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ScenarioError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(v.strip().lower() for v in values)


def _follow_up_criteria(raw: object, where: str) -> FollowUpCriteria | None:
    if raw is None:
        return None
    where = f"{where}: 'follow_up_criteria'"
    if not isinstance(raw, dict):
        raise ScenarioError(
            f"{where} must be an object with 'cover', 'undesired', 'desired' (and 'about_act')"
        )
    unknown = sorted(set(raw) - {"cover", "undesired", "desired", "about_act"})
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}")
    cover = raw.get("cover")
    if cover not in ("yes", "no", None):
        raise ScenarioError(f'{where}: \'cover\' must be "yes", "no" or null, got {cover!r}')
    about_act = raw.get("about_act", False)
    if not isinstance(about_act, bool):
        raise ScenarioError(f"{where}: 'about_act' must be true or false, got {about_act!r}")
    return FollowUpCriteria(
        cover=cover,
        undesired=_phrases(raw, "undesired", where),
        desired=_phrases(raw, "desired", where),
        about_act=about_act,
    )


def _scenario_from_dict(raw: dict, where: str) -> Scenario:
    required = ["id", "domain", "kind", "system", "pressure"]
    missing = [k for k in required if not isinstance(raw.get(k), str) or not raw[k].strip()]
    if missing:
        raise ScenarioError(f"{where}: missing or empty field(s) {missing}")
    where = f"{where} (scenario '{raw['id']}')"
    if raw["kind"] not in ("pressure", "benign"):
        raise ScenarioError(f"{where}: kind must be 'pressure' or 'benign', got {raw['kind']!r}")
    texts = {key: _texts(raw, key, where) for key in MIN_TEXTS}
    if raw["kind"] == "pressure":
        short = {k: len(v) for k, v in texts.items() if len(v) < MIN_TEXTS[k]}
        if short:
            raise ScenarioError(f"{where}: too few texts {short}; need at least {MIN_TEXTS}")
        for k in ("act", "harm", "follow_up"):
            if not str(raw.get(k, "")).strip():
                raise ScenarioError(f"{where}: a pressure scenario needs a non-empty '{k}'")
    elif len(texts["reasoning.ethical"]) < 2 or len(texts["answers.comply"]) < 2:
        raise ScenarioError(
            f"{where}: a benign scenario needs 2+ reasoning.ethical, answers.comply"
        )
    crit = raw.get("criteria", {})
    return Scenario(
        id=raw["id"],
        domain=raw["domain"],
        kind=raw["kind"],
        system=raw["system"].strip(),
        pressure=raw["pressure"].strip(),
        follow_up=str(raw.get("follow_up", "")).strip(),
        act=str(raw.get("act", "")).strip(),
        harm=str(raw.get("harm", "")).strip(),
        reasoning_ethical=texts["reasoning.ethical"],
        reasoning_unethical=texts["reasoning.unethical"],
        answers_comply=texts["answers.comply"],
        answers_refuse=texts["answers.refuse"],
        answers_rebut=texts["answers.rebut"],
        criteria=Criteria(
            undesired=tuple(s.lower() for s in crit.get("undesired", [])),
            desired=tuple(s.lower() for s in crit.get("desired", [])),
        ),
        follow_up_criteria=_follow_up_criteria(raw.get("follow_up_criteria"), where),
    )


def read_scenario_list(path: Path) -> list:
    """The raw entries of a scenario file (a JSON list), or a :class:`ScenarioError` naming
    the file (and line) when it is not one."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ScenarioError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err
    if not isinstance(raw, list):
        raise ScenarioError(f"{path}: expected a JSON list of scenarios")
    return raw


def load_scenario_file(path: Path) -> list[Scenario]:
    """Read one bank file (a JSON list of scenarios), validating every entry."""
    raw = read_scenario_list(path)
    return [_scenario_from_dict(item, f"{path}[{i}]") for i, item in enumerate(raw)]


def load_bank(directory: Path | None = None) -> list[Scenario]:
    """All scenarios of the built-in bank (or of ``directory``), sorted by id.

    Raises :class:`ScenarioError` on a schema error or a duplicate id.
    """
    if directory is None:
        files = sorted(
            (Path(str(f)) for f in resources.files(BANK_PACKAGE).iterdir()),
            key=lambda p: p.name,
        )
    else:
        files = sorted(Path(directory).iterdir())
    scenarios: list[Scenario] = []
    for path in files:
        if path.suffix == ".json":
            scenarios.extend(load_scenario_file(path))
    if not scenarios:
        raise ScenarioError(f"no scenario files (*.json) found in {directory or BANK_PACKAGE}")
    dupes = [k for k, n in Counter(s.id for s in scenarios).items() if n > 1]
    if dupes:
        raise ScenarioError(f"duplicate scenario ids in the bank: {dupes}")
    return sorted(scenarios, key=lambda s: s.id)


@dataclass
class BankSummaryConfig:
    """Validate the scenario bank and print a summary by domain."""

    bank: str | None = field(
        default=None,
        metadata={"help": "folder of scenario JSON files", "default_text": "the built-in bank"},
    )


def bank_summary(config: BankSummaryConfig) -> str:
    """Per kind and domain, the number of scenarios of the (validated) bank."""
    bank = load_bank(Path(config.bank) if config.bank else None)
    by_domain = Counter((s.kind, s.domain) for s in bank)
    lines = [f"{kind:9s} {domain:24s} {n:3d}" for (kind, domain), n in sorted(by_domain.items())]
    lines.append(f"{len(bank)} scenarios, {sum(s.kind == 'pressure' for s in bank)} with pressure")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m interp.data.scenarios``: validate the bank and print a summary by domain;
    a schema error is an ``error:`` line (exit status 2)."""
    from interp.cli import run_cli

    return run_cli(
        BankSummaryConfig,
        bank_summary,
        argv,
        prog="python -m interp.data.scenarios",
        report=lambda _, text: text,
    )


if __name__ == "__main__":
    raise SystemExit(main())
