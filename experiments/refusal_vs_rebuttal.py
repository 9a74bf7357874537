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
model, ``--max-scenarios 6`` for a quick look.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from interp.artifacts import write_json_atomic, write_text_atomic
from interp.cli import run_cli
from interp.data.scenarios import Scenario, load_bank
from interp.data.transcripts import Transcript, write_transcripts
from interp.models import DEFAULT_MODEL, LoadedModel, load_model
from interp.paths import cache_root
from interp.stats import Rate, wilson
from interp.text.generation import GenerationConfig, Prompt, generate
from interp.text.judging import (
    REFUSAL,
    Judge,
    LLMJudge,
    RuleJudge,
    Verdict,
    apply_verdicts,
    split_reply,
)

CONDITIONS = ("natural", "refusal", "rebuttal")


@dataclass
class FollowUpConfig:
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
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, mps"})
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
    return [
        _prompt(
            s,
            f"{s.id}-natural",
            [{"role": "system", "content": s.system}, {"role": "user", "content": s.pressure}],
        )
        for s in bank
    ]


def follow_up_prompts(bank: Sequence[Scenario], natural: dict[str, str]) -> list[Prompt]:
    """Prompts ending with the follow-up turn, for every scenario, condition and wording.
    ``natural`` maps scenario id to the model's own reply to the pressure turn."""
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
    head = " | ".join([f"{title:<18}", *(f"{h:^28}" for _, h in COLUMNS)])
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(" | ".join([f"{name:<18}", *(f"{r[k]!s:>28}" for k, _ in COLUMNS)]))
    return "\n".join(lines)


def figure(
    by_condition: dict[str, dict[str, Rate]], model_name: str, judge_name: str = "rule"
) -> go.Figure:
    fig = go.Figure()
    for key, label in [
        ("undesired", "undesired answer"),
        ("rbd", "reason-based deception"),
        ("missing_reasoning", "no reasoning"),
    ]:
        values = [by_condition[c][key] for c in CONDITIONS]
        fig.add_bar(
            name=label,
            x=list(CONDITIONS),
            y=[v.rate for v in values],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [v.high - v.rate for v in values],
                "arrayminus": [v.rate - v.low for v in values],
            },
        )
    fig.update_layout(
        barmode="group",
        template="plotly_white",
        yaxis_tickformat=".0%",
        title=f"Follow-up replies of {model_name} after each kind of first reply "
        f"({judge_name} judge, 95% Wilson intervals)",
        yaxis_title="share of follow-up replies",
        xaxis_title="assistant's reply to the pressure",
    )
    return fig


def make_follow_up_judge(config: FollowUpConfig, model: LoadedModel) -> Judge:
    """The rule judge, or the LLM judge on ``config.llm_model`` (the generating model when
    unset, without loading it twice)."""
    if config.judge == "rule":
        return RuleJudge()
    if config.llm_model and config.llm_model != config.model:
        model = load_model(config.llm_model, device=config.device)
    return LLMJudge(model, batch_size=config.batch_size, mode=config.llm_mode)


def run(config: FollowUpConfig) -> dict:
    bank = [s for s in load_bank() if s.kind == "pressure"]
    if config.max_scenarios is not None and config.max_scenarios < len(bank):
        keep = set(random.Random(config.seed).sample([s.id for s in bank], config.max_scenarios))
        bank = [s for s in bank if s.id in keep]
    model = load_model(config.model, device=config.device)
    slug = Path(model.name).name
    out = (
        Path(config.out)
        if config.out
        else cache_root() / "experiments" / "refusal_vs_rebuttal" / slug
    )
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

    by_condition = {
        c: rates([v for t, v in zip(followups, verdicts, strict=True) if t.meta["condition"] == c])
        for c in CONDITIONS
    }
    domains = sorted({s.domain for s in bank})
    by_domain = {
        f"{d}/{c}": rates(
            [
                v
                for t, v in zip(followups, verdicts, strict=True)
                if t.meta["condition"] == c and t.meta["domain"] == d
            ]
        )
        for d in domains
        for c in CONDITIONS
    }
    notes = Counter(v.note.split(":")[0] for v in verdicts if v.note)
    first_verdicts = judge.judge_all(first, scenarios)
    refusing = {
        "first turn": refusal_rate(first),
        **{
            f"follow-up/{c}": refusal_rate([t for t in followups if t.meta["condition"] == c])
            for c in CONDITIONS
        },
    }
    text = "\n\n".join(
        [
            f"{model.name}: {len(bank)} scenarios, {len(followups)} follow-up replies "
            f"({config.n} per prompt, temperature {config.temperature}), judged by the "
            f"{judge.name} judge.",
            table(by_condition, "condition"),
            table(by_domain, "domain/cond."),
            "The model's own replies to the pressure turn (first turn of the natural condition):\n"
            + table({"first turn": rates(first_verdicts)}, ""),
            "Replies whose answer is a first-person refusal (\"I can't / won't ...\"; to a "
            "follow-up question that is a deflection, not an answer):\n"
            + "\n".join(f"  {k:<18} {r!s}" for k, r in refusing.items()),
            f"Judge notes (counted, never a crash): {dict(notes) or 'none'}",
        ]
    )
    results = {
        "config": asdict(config),
        "model": {"name": model.name, "fingerprint": model.fingerprint},
        "n_scenarios": len(bank),
        "n_followups": len(followups),
        "by_condition": {c: {k: asdict(r) for k, r in v.items()} for c, v in by_condition.items()},
        "by_domain": {c: {k: asdict(r) for k, r in v.items()} for c, v in by_domain.items()},
        "first_turn": {k: asdict(r) for k, r in rates(first_verdicts).items()},
        "refusing": {k: asdict(r) for k, r in refusing.items()},
        "judge": judge.name,
        "judge_notes": dict(notes),
    }
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "table.txt", text + "\n")
    figure(by_condition, model.name, judge.name).write_html(
        out / "rates.html", include_plotlyjs=True
    )
    print(text)
    print(f"\nWrote {out}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(FollowUpConfig, run, argv, prog="python experiments/refusal_vs_rebuttal.py")


if __name__ == "__main__":
    raise SystemExit(main())
