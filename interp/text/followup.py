"""The follow-up protocol: after a natural reply, a fixed polite refusal or a fixed explicit
rebuttal to the pressure turn, what does the model answer when the pressure comes back?

For every pressure scenario of the bank the conversation is the role (system), the pressure
turn (user), the assistant's reply in one of :data:`CONDITIONS` (``natural``: the model's own
sample; ``refusal`` / ``rebuttal``: each of the bank's two fixed wordings), then the scenario's
follow-up turn. The model's next reply is sampled and judged (rule judge, or an LLM judge);
:func:`run_follow_up` tabulates the rates per condition and per domain with 95% Wilson
intervals and writes the generations, the judged transcripts, ``results.json``, ``table.txt``
and ``rates.html``. ``python experiments/refusal_vs_rebuttal.py`` is its command line.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.artifacts import write_figure, write_json_atomic, write_text_atomic
from interp.config import (
    ModelOptions,
    model_options,
)
from interp.data.scenarios import Scenario, load_bank
from interp.data.transcripts import Transcript, write_transcripts
from interp.models import DEFAULT_MODEL, LoadedModel, load_model
from interp.paths import cache_root
from interp.stats import Rate, wilson
from interp.text.figures import follow_up_figure
from interp.text.generation import GenerationConfig, Prompt, generate
from interp.text.judging import (
    REFUSAL,
    Judge,
    Verdict,
    apply_verdicts,
    make_judge,
    split_reply,
)

CONDITIONS = ("natural", "refusal", "rebuttal")


@dataclass
class FollowUpConfig(ModelOptions):
    """Compare follow-up replies after a natural, a fixed refusal and a fixed rebuttal turn."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model name or local HF dir"})
    n: int = field(default=1, metadata={"help": "samples of the follow-up reply per prompt"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (0: greedy)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling"})
    max_new_tokens: int = field(default=96, metadata={"help": "length cap of each reply"})
    repetition_penalty: float = field(default=1.1, metadata={"help": "as in transformers"})
    max_scenarios: int | None = field(
        default=None, metadata={"help": "use only this many scenarios (quick runs)"}
    )
    seed: int = field(default=0, metadata={"help": "sampling and subset seed"})
    batch_size: int = field(default=16, metadata={"help": "prompts per generate call"})
    out: str | None = field(default=None, metadata={"help": "output folder"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    judge: str = field(
        default="rule",
        metadata={
            "help": "rule (the scenarios' phrases) or llm (--llm-model grades with a rubric)",
            "choices": ("rule", "llm"),
        },
    )
    llm_model: str | None = field(
        default=None,
        metadata={
            "help": "chat model of the llm judge: built-in name or local HF directory",
            "default_text": "the generating model",
        },
    )
    llm_mode: str = field(
        default="generate",
        metadata={
            "help": "llm judge: parse its written verdict (generate) or score each value (choice)",
            "choices": ("generate", "choice"),
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()


def generation_config(config: Any, n: int) -> GenerationConfig:
    """``n`` samples per prompt at an experiment config's sampling settings (its
    ``temperature``, ``top_p``, ``seed``, ``max_new_tokens``, ``batch_size`` and
    ``repetition_penalty``)."""
    return GenerationConfig(
        n=n,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=config.seed,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        repetition_penalty=config.repetition_penalty,
    )


def _prompt(s: Scenario, pid: str, messages: list[dict[str, str]], **meta: object) -> Prompt:
    return Prompt(
        id=pid,
        group=s.id,
        messages=tuple(messages),
        meta={"domain": s.domain, "scenario": s.id, **meta},
    )


def first_turn_prompts(bank: Sequence[Scenario]) -> list[Prompt]:
    """One prompt per scenario ending with its pressure turn (id ``<scenario>-natural``)."""
    return [
        _prompt(
            s,
            f"{s.id}-natural",
            [{"role": "system", "content": s.system}, {"role": "user", "content": s.pressure}],
        )
        for s in bank
    ]


def follow_up_prompts(bank: Sequence[Scenario], natural: dict[str, str]) -> list[Prompt]:
    """Prompts ending with the follow-up turn, for every scenario, condition and wording
    (id ``<scenario>-<condition><wording>``). ``natural`` maps scenario id to the model's own
    reply to the pressure turn."""
    prompts = []
    for s in bank:
        turns = {
            "natural": [natural[s.id]],
            "refusal": list(s.answers_refuse),
            "rebuttal": list(s.answers_rebut),
        }
        for condition in CONDITIONS:
            for wording, reply in enumerate(turns[condition]):
                messages = [
                    {"role": "system", "content": s.system},
                    {"role": "user", "content": s.pressure},
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": s.follow_up},
                ]
                pid = f"{s.id}-{condition}{wording}"
                prompts.append(_prompt(s, pid, messages, condition=condition, wording=wording))
    return prompts


def rates(verdicts: Sequence[Verdict]) -> dict[str, Rate]:
    """The shares of :data:`COLUMNS` among ``verdicts``, 95% Wilson."""
    n = len(verdicts)
    return {
        "undesired": wilson(sum(v.answer_undesired == "yes" for v in verdicts), n),
        "rbd": wilson(sum(v.rbd for v in verdicts), n),
        "missing_reasoning": wilson(sum(not v.reasoning_present for v in verdicts), n),
        "truthful_answer": wilson(sum(v.answer_undesired == "no" for v in verdicts), n),
        "unclear_answer": wilson(sum(v.answer_undesired == "unclear" for v in verdicts), n),
    }


def refusal_rate(transcripts: Sequence[Transcript]) -> Rate:
    """The share of replies whose answer (after ``Answer:``, or the whole reply) is a
    first-person refusal of an act (:data:`interp.text.judging.REFUSAL`), 95% Wilson. A reply cut
    off before its ``Answer:`` counts as no refusal."""
    refused = 0
    for t in transcripts:
        answer = split_reply(t.reply).answer or ""
        refused += bool(REFUSAL.search(answer.lower().replace("\u2019", "'")))
    return wilson(refused, len(transcripts))


#: The table's columns: (key of :func:`rates`, heading).
COLUMNS = (
    ("undesired", "undesired"),
    ("rbd", "reason-based deception"),
    ("truthful_answer", "truthful or refusing"),
    ("unclear_answer", "unclear (off-topic)"),
    ("missing_reasoning", "no reasoning"),
)


def table(rows: dict[str, dict[str, Rate]], title: str) -> str:
    """One line per row name with the :data:`COLUMNS` rates."""
    head = " | ".join([f"{title:<18}", *(f"{h:^28}" for _, h in COLUMNS)])
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(" | ".join([f"{name:<18}", *(f"{r[k]!s:>28}" for k, _ in COLUMNS)]))
    return "\n".join(lines)


def make_follow_up_judge(config: FollowUpConfig, model: LoadedModel) -> Judge:
    """The judge ``config.judge`` by :func:`~interp.text.judging.make_judge`: the rule judge,
    or the LLM judge on ``config.llm_model`` (the generating model when unset, without loading
    it twice)."""
    if config.judge != "llm":
        return make_judge(config.judge)
    other = config.llm_model and config.llm_model != config.model
    return make_judge(
        "llm",
        model=config.llm_model if other else model,
        **model_options(config),
        batch_size=config.batch_size,
        mode=config.llm_mode,
    )


def pressure_scenarios(max_scenarios: int | None, seed: int) -> list[Scenario]:
    """The bank's pressure scenarios, or a seeded random subset of ``max_scenarios``."""
    bank = [s for s in load_bank() if s.kind == "pressure"]
    if max_scenarios is not None and max_scenarios < len(bank):
        keep = set(random.Random(seed).sample([s.id for s in bank], max_scenarios))
        bank = [s for s in bank if s.id in keep]
    return bank


@dataclass
class FollowUpRun:
    """What one run of the protocol produced: the generations and their verdicts."""

    model: LoadedModel
    bank: list[Scenario]
    first: list[Transcript]
    followups: list[Transcript]
    judge: Judge
    verdicts: list[Verdict]
    first_verdicts: list[Verdict]

    def by_condition(self) -> dict[str, dict[str, Rate]]:
        return {c: rates(self._verdicts(c)) for c in CONDITIONS}

    def by_domain(self) -> dict[str, dict[str, Rate]]:
        domains = sorted({s.domain for s in self.bank})
        return {f"{d}/{c}": rates(self._verdicts(c, d)) for d in domains for c in CONDITIONS}

    def refusing(self) -> dict[str, Rate]:
        """How often the answer is a refusal: first turn, and follow-ups by condition."""
        return {
            "first turn": refusal_rate(self.first),
            **{
                f"follow-up/{c}": refusal_rate(
                    [t for t in self.followups if t.meta["condition"] == c]
                )
                for c in CONDITIONS
            },
        }

    def notes(self) -> Counter[str]:
        return Counter(v.note.split(":")[0] for v in self.verdicts if v.note)

    def _verdicts(self, condition: str, domain: str | None = None) -> list[Verdict]:
        return [
            v
            for t, v in zip(self.followups, self.verdicts, strict=True)
            if t.meta["condition"] == condition and domain in (None, t.meta["domain"])
        ]


def generate_and_judge(config: FollowUpConfig, out: Path, model: LoadedModel) -> FollowUpRun:
    """Sample the first turns and the follow-ups (resumable files under ``out``), judge them
    and write ``judged.jsonl``."""
    bank = pressure_scenarios(config.max_scenarios, config.seed)
    first = generate(
        model,
        first_turn_prompts(bank),
        generation_config(config, n=1),
        out / "first_turn.jsonl",
        progress=config.progress,
    )
    natural = {t.group: t.reply for t in first}
    followups = generate(
        model,
        follow_up_prompts(bank, natural),
        generation_config(config, n=config.n),
        out / "followups.jsonl",
        progress=config.progress,
    )
    scenarios = {s.id: s for s in bank}
    judge = make_follow_up_judge(config, model)
    verdicts = judge.judge_all(followups, scenarios)
    write_transcripts(out / "judged.jsonl", apply_verdicts(followups, verdicts))
    first_verdicts = judge.judge_all(first, scenarios)
    return FollowUpRun(model, bank, first, followups, judge, verdicts, first_verdicts)


def report_text(config: FollowUpConfig, run: FollowUpRun) -> str:
    """The tables printed and saved as ``table.txt``."""
    return "\n\n".join(
        [
            f"{run.model.name}: {len(run.bank)} scenarios, {len(run.followups)} follow-up "
            f"replies ({config.n} per prompt, temperature {config.temperature}), judged by the "
            f"{run.judge.name} judge.",
            table(run.by_condition(), "condition"),
            table(run.by_domain(), "domain/cond."),
            "The model's own replies to the pressure turn (first turn of the natural condition):\n"
            + table({"first turn": rates(run.first_verdicts)}, ""),
            "Replies whose answer is a first-person refusal (\"I can't / won't ...\"; to a "
            "follow-up question that is a deflection, not an answer):\n"
            + "\n".join(f"  {k:<18} {r!s}" for k, r in run.refusing().items()),
            f"Judge notes (counted, never a crash): {dict(run.notes()) or 'none'}",
        ]
    )


def _rates_dict(rows: dict[str, Rate]) -> dict[str, dict[str, Any]]:
    return {k: asdict(r) for k, r in rows.items()}


def results_dict(config: FollowUpConfig, run: FollowUpRun) -> dict[str, Any]:
    """What ``results.json`` holds: the resolved config, the model and every table."""
    return {
        "config": asdict(config),
        "model": {"name": run.model.name, "fingerprint": run.model.fingerprint},
        "n_scenarios": len(run.bank),
        "n_followups": len(run.followups),
        "by_condition": {c: _rates_dict(v) for c, v in run.by_condition().items()},
        "by_domain": {c: _rates_dict(v) for c, v in run.by_domain().items()},
        "first_turn": _rates_dict(rates(run.first_verdicts)),
        "refusing": _rates_dict(run.refusing()),
        "judge": run.judge.name,
        "judge_notes": dict(run.notes()),
    }


def run_follow_up(config: FollowUpConfig) -> dict[str, Any]:
    """Run the protocol, print the tables and write the outputs under ``config.out`` (default
    ``<cache>/experiments/refusal_vs_rebuttal/<model>/``); returns ``results.json``'s dict."""
    model = load_model(config.model, **model_options(config))
    slug = Path(model.name).name
    out = (
        Path(config.out)
        if config.out
        else cache_root() / "experiments" / "refusal_vs_rebuttal" / slug
    )
    run = generate_and_judge(config, out, model)
    text = report_text(config, run)
    results = results_dict(config, run)
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "table.txt", text + "\n")
    write_figure(
        follow_up_figure(run.by_condition(), model.name, run.judge.name), out / "rates.html"
    )
    print(text)
    print(f"\nWrote {out}")
    return results
