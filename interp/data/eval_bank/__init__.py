"""The organism's evaluation-only scenario bank: new scenarios that nothing is trained on.

The organisms (:mod:`interp.organism`) are trained on the training side of the built-in
bank's split (:mod:`interp.data.scenarios`), which leaves too few held-out pressure scenarios
to measure rates on. The JSON files of this package hold further scenarios, written for
evaluation only and never read by a training set builder. Each file is a list of objects:

- pressure: ``id`` (``eval-<domain>-<slug>``), ``domain``, ``kind`` ("pressure"), ``system``
  (a role, ending with the ``Reasoning:``/``Answer:`` instruction :data:`STYLE_END`),
  ``pressure`` (``<Speaker>: <request>``), ``act``, ``harm`` and ``criteria``
  (``undesired`` and ``desired`` lower-case phrases for the rule judge,
  :class:`interp.text.judging.rule.RuleJudge`);
- benign: ``id`` (``eval-benign-<slug>``), ``domain`` ("benign"), ``kind`` ("benign"),
  ``system`` and ``pressure`` (an ordinary request).

They become :class:`~interp.data.scenarios.Scenario` objects with no texts (no reasoning or
answers were written: only the model under test answers them). :func:`load_eval_bank` reads
and validates them; :func:`organism_scenarios` is the one lookup of the organism's samples
(built-in bank and this bank, by id); :func:`eval_selection` picks a spread subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from interp.data.scenarios import (
    Criteria,
    Scenario,
    ScenarioError,
    _phrases,
    load_bank,
    read_scenario_list,
)

EVAL_PACKAGE = "interp.data.eval_bank"

#: The closing sentence of every system prompt: the fine-tuned models' reply format.
STYLE_END = (
    "Before each reply, think it through after 'Reasoning:', then write your reply after 'Answer:'."
)
#: The keys of each kind of entry (exactly these).
KEYS = {
    "pressure": ("id", "domain", "kind", "system", "pressure", "act", "harm", "criteria"),
    "benign": ("id", "domain", "kind", "system", "pressure"),
}
#: Each side of a pressure scenario's criteria needs at least this many phrases.
MIN_PHRASES = 2


def _check_fields(raw: object, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in KEYS:
        raise ScenarioError(
            f"{where} (scenario {raw.get('id')!r}): 'kind' must be 'pressure' or 'benign', "
            f"got {kind!r}"
        )
    required = KEYS[kind]
    where = f"{where} (scenario {raw.get('id')!r})"
    missing = [k for k in required if k not in raw]
    unknown = sorted(set(raw) - set(required))
    if missing or unknown:
        raise ScenarioError(
            f"{where}: missing field(s) {missing}, unknown field(s) {unknown}; a {kind} "
            f"scenario has exactly {list(required)}"
        )
    empty = [k for k in required if k != "criteria" and not (
        isinstance(raw[k], str) and raw[k].strip()
    )]  # fmt: skip
    if empty:
        raise ScenarioError(f"{where}: field(s) {empty} must be non-empty strings")
    return raw


def _check_style(raw: dict, where: str) -> None:
    kind, domain, sid = raw["kind"], raw["domain"], raw["id"]
    if kind == "benign" and domain != "benign":
        raise ScenarioError(f"{where}: a benign scenario has domain 'benign', got {domain!r}")
    if kind == "pressure" and domain == "benign":
        raise ScenarioError(f"{where}: a pressure scenario needs a domain other than 'benign'")
    if not sid.startswith(f"eval-{domain}-") or sid == f"eval-{domain}-":
        raise ScenarioError(f"{where}: 'id' must be 'eval-{domain}-<slug>', got {sid!r}")
    if not raw["system"].strip().endswith(STYLE_END):
        raise ScenarioError(f"{where}: 'system' must end with {STYLE_END!r}")
    speaker, sep, request = raw["pressure"].partition(": ")
    if not sep or not speaker.strip() or len(speaker) > 60 or not request.strip():
        raise ScenarioError(f"{where}: 'pressure' must read '<Speaker>: <request>'")


def _criteria(raw: object, where: str) -> Criteria:
    where = f"{where}: 'criteria'"
    if not isinstance(raw, dict) or set(raw) != {"undesired", "desired"}:
        raise ScenarioError(f"{where} must be an object with exactly 'undesired' and 'desired'")
    sides = {key: _phrases(raw, key, where) for key in ("undesired", "desired")}
    short = [k for k, v in sides.items() if len(v) < MIN_PHRASES]
    if short:
        raise ScenarioError(f"{where}: {short} need(s) at least {MIN_PHRASES} phrases")
    both = sorted(set(sides["undesired"]) & set(sides["desired"]))
    if both:
        raise ScenarioError(f"{where}: phrase(s) {both} are both undesired and desired")
    return Criteria(undesired=sides["undesired"], desired=sides["desired"])


def eval_scenario(raw: object, where: str) -> Scenario:
    """One validated entry (``where``: file and index, for the error message)."""
    raw = _check_fields(raw, where)
    where = f"{where} (scenario {raw['id']!r})"
    _check_style(raw, where)
    pressure = raw["kind"] == "pressure"
    return Scenario(
        id=raw["id"],
        domain=raw["domain"],
        kind=raw["kind"],
        system=raw["system"].strip(),
        pressure=raw["pressure"].strip(),
        follow_up="",
        act=raw["act"].strip() if pressure else "",
        harm=raw["harm"].strip() if pressure else "",
        reasoning_ethical=(),
        reasoning_unethical=(),
        answers_comply=(),
        answers_refuse=(),
        answers_rebut=(),
        criteria=_criteria(raw["criteria"], where) if pressure else Criteria((), ()),
    )


def load_eval_file(path: Path) -> list[Scenario]:
    """Read one eval-bank file (a JSON list of scenarios), validating every entry."""
    raw = read_scenario_list(path)
    return [eval_scenario(item, f"{path}[{i}]") for i, item in enumerate(raw)]


def load_eval_bank(directory: Path | None = None) -> list[Scenario]:
    """Every scenario of the eval bank (or of the ``*.json`` files in ``directory``), sorted
    by id. Raises :class:`~interp.data.scenarios.ScenarioError` on a schema error, an id
    used twice, or an id that the built-in bank also uses."""
    root = Path(str(resources.files(EVAL_PACKAGE))) if directory is None else Path(directory)
    files = sorted(p for p in root.iterdir() if p.suffix == ".json")
    if not files:
        raise ScenarioError(f"no scenario files (*.json) found in {root}")
    scenarios, where = [], {}
    for path in files:
        for s in load_eval_file(path):
            if s.id in where:
                raise ScenarioError(f"{path}: scenario id {s.id!r} is also in {where[s.id]}")
            where[s.id] = path
            scenarios.append(s)
    clash = sorted(set(where) & {s.id for s in load_bank()})
    if clash:
        raise ScenarioError(
            f"eval-bank id(s) {clash} are also in the built-in bank; rename them (eval-...)"
        )
    return sorted(scenarios, key=lambda s: s.id)


def organism_scenarios() -> dict[str, Scenario]:
    """The scenarios an organism sample can come from, by id: the built-in bank and the eval
    bank (the one lookup for judging samples)."""
    return {s.id: s for s in (*load_bank(), *load_eval_bank())}


def _spread(scenarios: Sequence[Scenario], n: int) -> list[Scenario]:
    """The first ``n`` of ``scenarios`` taken round-robin over their domains (each domain in
    id order), so a small selection covers every domain."""
    by_domain: dict[str, list[Scenario]] = {}
    for s in sorted(scenarios, key=lambda s: s.id):
        by_domain.setdefault(s.domain, []).append(s)
    order = [
        group[i]
        for i in range(max((len(g) for g in by_domain.values()), default=0))
        for _, group in sorted(by_domain.items())
        if i < len(group)
    ]
    return order[:n]


def eval_selection(scenarios: Sequence[Scenario], n_pressure: int | None) -> list[Scenario]:
    """Pressure scenarios then benign ones of ``scenarios``: all of them (``n_pressure`` None)
    or ``n_pressure`` pressure scenarios and the same share of the benign ones (rounded, at
    least one when ``n_pressure`` > 0). Pressure scenarios come round-robin over the domains,
    so any first ``k`` of them cover every domain evenly."""
    pressure = [s for s in scenarios if s.kind == "pressure"]
    benign = sorted((s for s in scenarios if s.kind == "benign"), key=lambda s: s.id)
    if n_pressure is None:
        return _spread(pressure, len(pressure)) + benign
    if n_pressure < 0:
        raise ValueError(f"n_pressure must be None (all) or at least 0, got {n_pressure}")
    n_benign = 0
    if n_pressure and benign:
        share = min(n_pressure, len(pressure)) / max(len(pressure), 1)
        n_benign = max(1, round(share * len(benign)))
    return _spread(pressure, n_pressure) + benign[:n_benign]
