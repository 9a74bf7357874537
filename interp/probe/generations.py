"""Does a probe trained on teacher-forced transcripts track what the model itself writes?

:func:`probe_generations` scores judged generations (``judged.jsonl`` of
:mod:`interp.text.followup`: ``label`` = the judge's rbd, ``meta.verdict`` the judge's fields)
token by token with a saved probe, reports the AUROC of each reply's mean score against the
judge's ``rbd`` and ``answer_undesired`` (scenario-bootstrap 95% intervals), and writes
``probe_vs_judge.json`` and ``disagreements.html`` (the replies where probe and judge disagree
most, each token coloured by its score). ``python experiments/probe_generations.py`` is its
command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import write_json_atomic
from interp.config import (
    ConfigError,
    ModelOptions,
    model_options,
)
from interp.data.transcripts import Transcript, load_transcripts
from interp.models import load_model
from interp.paths import cache_root
from interp.probe.results import load_probe, probe_dir
from interp.probe.token_scores import TokenScores, score_tokens, write_token_html
from probes import Probe, auroc, auroc_ci

#: Where ``experiments/refusal_vs_rebuttal.py`` writes the default model's judged replies.
DEFAULT_JUDGED = "experiments/refusal_vs_rebuttal/smollm2-135m-instruct/judged.jsonl"


@dataclass
class ProbeGenerationsConfig(ModelOptions):
    """Score judged generations with a saved probe and compare the scores with the judge."""

    run: str = field(metadata={"help": "a probe run folder (holds probes/L<n>)"})
    layer: int = field(metadata={"help": "which layer's probe"})
    judged: str | None = field(
        default=None,
        metadata={"help": "judged generations", "default_text": f"<cache>/{DEFAULT_JUDGED}"},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "model to run", "default_text": "the model the probe names"},
    )
    top: int = field(default=30, metadata={"help": "disagreements shown in the page"})
    out: str | None = field(
        default=None, metadata={"help": "output folder", "default_text": "beside --judged"}
    )

    def __post_init__(self) -> None:
        if self.layer < 0:
            raise ConfigError(f"layer must be >= 0, got {self.layer}")
        if self.top < 0:
            raise ConfigError(f"top must be >= 0, got {self.top}")
        super().__post_init__()

    @property
    def judged_path(self) -> Path:
        return Path(self.judged) if self.judged else cache_root() / DEFAULT_JUDGED


def auroc_or_none(
    labels: list[int], scores: list[float], groups: list[str]
) -> dict[str, float] | None:
    """AUROC with a 95% interval by scenario bootstrap (replies of one scenario are not
    independent); None when only one class is present."""
    if not 0 < sum(labels) < len(labels):
        return None
    y, x = torch.tensor(labels), torch.tensor(scores)
    low, high = auroc_ci(y, x, groups)
    return {"auroc": auroc(y, x), "low": low, "high": high}


def _answer_undesired(t: Transcript) -> str | None:
    return t.meta.get("verdict", {}).get("answer_undesired")


def compare_with_judge(transcripts: Sequence[Transcript], means: list[float]) -> dict[str, Any]:
    """AUROCs of the replies' mean probe scores against the judge's rbd and, on replies it
    could decide, its ``answer_undesired``; mean score per ``meta.condition``."""
    rbd = [int(t.label or 0) for t in transcripts]
    groups = [t.group for t in transcripts]
    decided = [
        (m, _answer_undesired(t), t.group)
        for m, t in zip(means, transcripts, strict=True)
        if _answer_undesired(t) in ("yes", "no")
    ]
    by_condition: dict[str, list[float]] = {}
    for m, t in zip(means, transcripts, strict=True):
        by_condition.setdefault(str(t.meta.get("condition")), []).append(m)
    return {
        "n": len(transcripts),
        "n_rbd": sum(rbd),
        "auroc_vs_rbd": auroc_or_none(rbd, means, groups),
        "n_answer_decided": len(decided),
        "auroc_vs_answer_undesired": auroc_or_none(
            [int(v == "yes") for _, v, _ in decided],
            [m for m, _, _ in decided],
            [g for _, _, g in decided],
        ),
        "mean_score_by_condition": {c: sum(v) / len(v) for c, v in sorted(by_condition.items())},
    }


def write_disagreements(
    path: Path,
    probe: Probe,
    transcripts: Sequence[Transcript],
    scored: Sequence[TokenScores],
    top: int,
) -> None:
    """The ``top`` replies where the probe (mean score vs its threshold) and the judge's rbd
    disagree most, each token coloured by its score."""
    means = [s.mean for s in scored]
    rbd = [bool(t.label) for t in transcripts]
    predicted = [m >= probe.threshold for m in means]
    disagreements = sorted(
        (i for i in range(len(transcripts)) if predicted[i] != rbd[i]),
        key=lambda i: -abs(means[i] - probe.threshold),
    )[:top]
    items = [
        (
            transcripts[i],
            scored[i],
            f"judge rbd={rbd[i]}, answer_undesired={_answer_undesired(transcripts[i])}; "
            f"probe mean score {means[i]:+.2f} (threshold {probe.threshold:+.2f}); "
            f"condition {transcripts[i].meta.get('condition')}",
        )
        for i in disagreements
    ]
    write_token_html(
        path, items, f"Probe {probe.meta.hook} vs the judge: the {len(items)} largest disagreements"
    )


def probe_generations(config: ProbeGenerationsConfig) -> dict[str, Any]:
    """Score ``config``'s judged generations with its probe, print and write the comparison
    (``probe_vs_judge.json``) and the disagreement page; returns the comparison."""
    probe = load_probe(config.run, config.layer)
    transcripts = load_transcripts(config.judged_path)
    model = load_model(
        config.model or probe.meta.model_name or "default",
        **model_options(config),
        max_layer=config.layer,
    )
    probe.to(model.device)
    scored = score_tokens(model, probe, transcripts)
    results = {
        "probe": str(probe_dir(config.run, config.layer)),
        "hook": probe.meta.hook,
        "judged": str(config.judged_path),
        **compare_with_judge(transcripts, [s.mean for s in scored]),
    }
    out = Path(config.out) if config.out else config.judged_path.parent
    write_disagreements(out / "disagreements.html", probe, transcripts, scored, config.top)
    write_json_atomic(out / "probe_vs_judge.json", results)
    for key, value in results.items():
        print(f"{key}: {value}")
    print(f"Wrote {out / 'probe_vs_judge.json'} and {out / 'disagreements.html'}")
    return results
