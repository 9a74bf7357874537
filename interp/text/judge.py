"""``python -m interp.text.judge --input gen.jsonl``: judge generated replies, export them for hand
labelling, and compare a judge with hand labels.

All options are the fields of :class:`JudgeConfig` (``--help`` lists them); :func:`run_judge`
takes the same config from Python. What a run does:

1. reads a JSONL file of transcripts whose last message is a reply (e.g. the output of
   :func:`interp.text.generation.generate`);
2. with ``--export FILE.csv|.jsonl``, writes the replies with empty label columns for hand
   labelling (:func:`interp.text.judging.export_for_labelling`);
3. judges every reply with the ``rule`` judge (the scenario bank's phrases, no model), the
   ``llm`` judge (``--llm-model``, a local chat model with a fixed rubric) or ``human`` (the
   ``--labels`` file is the verdict), and writes the judged transcripts (``label`` = rbd,
   verdict in ``meta``; :func:`interp.text.judging.apply_verdicts`) to ``--out``; ``none`` skips
   judging (export only);
4. with ``--labels FILE`` (a filled-in export) and a model judge, prints accuracy and Cohen's
   kappa per field against the labels, the confusion table of ``answer_undesired`` and the
   disagreements.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.cli import run_cli
from interp.config import (
    ModelOptions,
    model_options,
)
from interp.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from interp.models import LoadedModel

JUDGE_CHOICES = ("rule", "llm", "human", "none")


@dataclass
class JudgeConfig(ModelOptions):
    """Judge generated replies (rule, LLM or hand labels), write judged transcripts, export
    replies for hand labelling, and report a judge's agreement with hand labels."""

    input: str | None = field(
        default=None,
        metadata={"help": "JSONL file of transcripts whose last message is the reply to judge"},
    )
    judge: str = field(
        default="rule",
        metadata={
            "help": "rule (scenario phrases), llm (--llm-model with a rubric), human (the "
            "--labels file is the verdict) or none (only --export)",
            "choices": JUDGE_CHOICES,
        },
    )
    out: str | None = field(
        default=None,
        metadata={
            "help": "judged transcripts (label = rbd) go here",
            "default_text": "<input>.judged-<judge>.jsonl",
        },
    )
    drop_unclear: bool = field(
        default=False,
        metadata={"help": "leave out of --out the replies whose rbd rests on an 'unclear'"},
    )
    export: str | None = field(
        default=None,
        metadata={"help": "also write the replies for hand labelling to this .csv or .jsonl"},
    )
    labels: str | None = field(
        default=None,
        metadata={"help": "hand labels (a filled-in --export file): compare the judge with them"},
    )
    llm_model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "chat model of the llm judge: built-in name or local HF directory"},
    )
    llm_max_new_tokens: int = field(
        default=64, metadata={"help": "length cap of the llm judge's verdict"}
    )
    llm_batch_size: int = field(default=8, metadata={"help": "prompts per llm judge batch"})
    llm_mode: str = field(
        default="generate",
        metadata={
            "help": "generate: the model writes its verdict, which is parsed; choice: each "
            "rubric value is scored and the likeliest taken (for models too small to follow "
            "the format)",
            "choices": ("generate", "choice"),
        },
    )
    bank: str | None = field(
        default=None,
        metadata={
            "help": "scenario bank directory (the rule judge reads its criteria)",
            "default_text": "the built-in bank",
        },
    )
    show: int = field(default=10, metadata={"help": "disagreements to print"})
    json: str | None = field(
        default=None, metadata={"help": "write counts and agreement as JSON here"}
    )

    def __post_init__(self) -> None:
        if self.judge not in JUDGE_CHOICES:
            raise ValueError(f"--judge {self.judge!r}: choose one of {', '.join(JUDGE_CHOICES)}")
        if not self.input:
            raise ValueError("--input is required: a JSONL file of transcripts to judge")
        if self.judge == "human" and not self.labels:
            raise ValueError("--judge human reads its verdicts from --labels; give the file")
        if self.judge == "none" and not self.export:
            raise ValueError("--judge none only exports: give --export FILE.csv or .jsonl")
        for name in ("llm_max_new_tokens", "llm_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.show < 0:
            raise ValueError("--show must be >= 0")
        super().__post_init__()


@dataclass
class JudgeReport:
    """What :func:`run_judge` did: verdicts by id (empty for ``none``), answer counts,
    agreement with ``--labels`` (or None) and the files it wrote."""

    verdicts: dict[str, Any]
    counts: dict[str, int]
    agreement: dict[str, Any] | None
    confusion: dict[str, dict[str, int]] | None
    written: dict[str, str]
    n_labelled_elsewhere: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "counts": self.counts,
            "agreement": self.agreement,
            "confusion_answer_undesired": self.confusion,
            "written": self.written,
            "n_labelled_elsewhere": self.n_labelled_elsewhere,
        }


def default_out(input_path: str | Path, judge: str) -> Path:
    path = Path(input_path)
    return path.with_name(f"{path.stem}.judged-{judge}.jsonl")


def judge_options(config: JudgeConfig, model: LoadedModel | None = None) -> dict[str, Any]:
    """The options :func:`interp.text.judging.make_judge` takes for ``config.judge``: the llm
    judge's model (``model`` if given, else ``config.llm_model``) and settings, the human
    judge's labels file."""
    if config.judge == "llm":
        return {
            "model": model if model is not None else config.llm_model,
            **model_options(config),
            "max_new_tokens": config.llm_max_new_tokens,
            "batch_size": config.llm_batch_size,
            "mode": config.llm_mode,
        }
    if config.judge == "human":
        return {"labels": config.labels}
    return {}


def _summary(verdicts: Sequence[Any]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for v in verdicts:
        counts[f"answer_{v.answer_undesired}"] += 1
        counts["reasoning_present"] += v.reasoning_present
        counts["rbd"] += v.rbd
    return {"judged": len(verdicts), **counts}


def run_judge(config: JudgeConfig, model: LoadedModel | None = None) -> JudgeReport:
    """Export, judge and compare as :class:`JudgeConfig` says; returns a :class:`JudgeReport`.

    ``model``: an already loaded chat model for the llm judge (else ``config.llm_model`` is
    loaded)."""
    from interp.data.scenarios import load_bank
    from interp.data.transcripts import load_transcripts, write_transcripts
    from interp.text.judging import (
        JudgeError,
        agreement,
        apply_verdicts,
        confusion,
        export_for_labelling,
        import_labels,
        make_judge,
    )

    assert config.input is not None  # checked in JudgeConfig
    transcripts = load_transcripts(config.input)
    written: dict[str, str] = {}
    if config.export:
        export_for_labelling(transcripts, config.export)
        written["export"] = config.export
    labels = import_labels(config.labels) if config.labels else None
    ids = {t.id for t in transcripts}
    elsewhere = sum(1 for i in labels if i not in ids) if labels else 0

    if config.judge == "none":
        return JudgeReport({}, {"judged": 0}, None, None, written, elsewhere)
    judge = make_judge(config.judge, **judge_options(config, model))
    bank = load_bank(Path(config.bank) if config.bank else None)
    verdicts = judge.judge_all(transcripts, {s.id: s for s in bank})
    notes = Counter({k: n for k, n in judge.counts.items() if k != "judged"})
    out = Path(config.out) if config.out else default_out(config.input, config.judge)
    write_transcripts(out, apply_verdicts(transcripts, verdicts, drop_unclear=config.drop_unclear))
    written["judged"] = str(out)
    by_id = {t.id: v for t, v in zip(transcripts, verdicts, strict=True)}
    counts = _summary(verdicts)
    counts.update({f"note: {k}": n for k, n in notes.items()})

    compared = table = None
    if labels is not None and config.judge != "human":
        common = [t.id for t in transcripts if t.id in labels]
        if not common:
            raise JudgeError(
                f"{config.labels}: none of its {len(labels)} labelled ids is a transcript of "
                f"{config.input}; was it exported from this file?"
            )
        compared = agreement(labels, by_id, common)
        table = confusion(labels, by_id, "answer_undesired", common)
    report = JudgeReport(by_id, counts, compared, table, written, elsewhere)
    if config.json:
        from interp.artifacts import write_json_atomic

        write_json_atomic(Path(config.json), {"config": asdict(config), **report.to_dict()})
        written["json"] = config.json
    return report


def format_report(config: JudgeConfig, report: JudgeReport) -> str:
    from interp.text.judging import format_confusion

    lines = []
    c = report.counts
    if config.judge != "none":
        lines.append(
            f"Judged {c['judged']} replies of {config.input} ({config.judge} judge): "
            f"answer undesired yes {c.get('answer_yes', 0)}, no {c.get('answer_no', 0)}, "
            f"unclear {c.get('answer_unclear', 0)}; reasoning present "
            f"{c.get('reasoning_present', 0)}; rbd {c.get('rbd', 0)}"
        )
        notes = {k[len("note: ") :]: n for k, n in c.items() if k.startswith("note: ")}
        if notes and config.judge == "human":  # the labellers' free-text reasons
            lines.append(f"  {sum(notes.values())} labels carry a labeller's note")
        elif notes:
            lines.append(f"  notes (counted, not errors): {notes}")
    if "judged" in report.written:
        lines.append(f"Wrote judged transcripts (label = rbd) to {report.written['judged']}")
    if "export" in report.written:
        lines.append(f"Exported the replies for hand labelling to {report.written['export']}")
    if report.n_labelled_elsewhere:
        lines.append(f"  ({report.n_labelled_elsewhere} labelled ids are not in {config.input})")
    if report.agreement is not None:
        a = report.agreement
        lines.append(f"\n{config.judge} judge against {config.labels} ({a['n']} replies):")
        lines.append(f"  {'field':18s} accuracy   kappa")
        for name, stats in a["fields"].items():
            lines.append(f"  {name:18s} {stats['accuracy']:8.3f}  {stats['kappa']:+.3f}")
        if report.confusion is not None:
            table = format_confusion(report.confusion, "labels", config.judge)
            lines.append("\n  answer_undesired:\n" + "\n".join("  " + r for r in table.split("\n")))
        shown = a["disagreements"][: config.show]
        if shown:
            lines.append(f"\n  {len(a['disagreements'])} disagreements; the first {len(shown)}:")
            lines.extend(
                f"    {d['id']}: {d['field']} labels={d['a']} {config.judge}={d['b']}"
                for d in shown
            )
    if "json" in report.written:
        lines.append(f"Wrote {report.written['json']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        JudgeConfig,
        run_judge,
        argv,
        prog="python -m interp.text.judge",
        report=format_report,
        aliases={"-i": "input"},
    )


if __name__ == "__main__":
    raise SystemExit(main())
