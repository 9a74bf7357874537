"""Experiment: does a probe trained on teacher-forced transcripts track what the model itself
writes?

Takes a probe saved by ``python -m interp.probe`` (``--run`` folder and ``--layer``) and judged
generations in the transcript format (``judged.jsonl`` from
``experiments/refusal_vs_rebuttal.py``: ``label`` = the judge's rbd, ``meta.verdict`` the
judge's fields). Scores every reply token by token with the probe, reports the AUROC of the
reply's mean score against the judge's ``rbd`` and against ``answer_undesired`` (on replies the
judge could decide), and writes an HTML page of the replies where probe and judge disagree
most, each token coloured by its score.

Outputs under ``--out`` (default: beside ``--judged``): ``probe_vs_judge.json`` and
``disagreements.html``.

Run: ``python experiments/probe_generations.py --run cache/runs/smollm2-135m-instruct/
consistency-resid_post-answer-logistic-L14 --layer 14``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from interp.artifacts import write_json_atomic
from interp.data.transcripts import load_transcripts
from interp.models import load_model
from interp.paths import cache_root
from interp.probe.token_scores import score_tokens, write_token_html
from probes import Probe, auroc, auroc_ci

DEFAULT_JUDGED = "experiments/refusal_vs_rebuttal/smollm2-135m-instruct/judged.jsonl"


def _auroc_or_none(
    labels: list[int], scores: list[float], groups: list[str]
) -> dict[str, float] | None:
    """AUROC with a 95% interval by scenario bootstrap (replies of one scenario are not
    independent); None when only one class is present."""
    if not 0 < sum(labels) < len(labels):
        return None
    y, x = torch.tensor(labels), torch.tensor(scores)
    low, high = auroc_ci(y, x, groups)
    return {"auroc": auroc(y, x), "low": low, "high": high}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a probe run folder (holds probes/L<n>)")
    parser.add_argument("--layer", type=int, required=True, help="which layer's probe")
    parser.add_argument(
        "--judged", default=None, help=f"judged generations (default: <cache>/{DEFAULT_JUDGED})"
    )
    parser.add_argument("--model", default=None, help="default: the model the probe names")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--top", type=int, default=30, help="disagreements shown in the page")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    probe_dir = Path(args.run) / "probes" / f"L{args.layer}"
    judged = Path(args.judged) if args.judged else cache_root() / DEFAULT_JUDGED
    try:
        probe = Probe.load(probe_dir)
        transcripts = load_transcripts(judged)
        model = load_model(args.model or probe.meta.model_name or "default", device=args.device)
        probe.to(model.device)
        scored = score_tokens(model, probe, transcripts)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    means = [s.mean for s in scored]
    rbd = [int(t.label or 0) for t in transcripts]
    groups = [t.group for t in transcripts]
    decided = [
        (m, t.meta["verdict"]["answer_undesired"], t.group)
        for m, t in zip(means, transcripts, strict=True)
        if t.meta.get("verdict", {}).get("answer_undesired") in ("yes", "no")
    ]
    results = {
        "probe": str(probe_dir),
        "hook": probe.meta.hook,
        "judged": str(judged),
        "n": len(transcripts),
        "n_rbd": sum(rbd),
        "auroc_vs_rbd": _auroc_or_none(rbd, means, groups),
        "n_answer_decided": len(decided),
        "auroc_vs_answer_undesired": _auroc_or_none(
            [int(v == "yes") for _, v, _ in decided],
            [m for m, _, _ in decided],
            [g for _, _, g in decided],
        ),
        "mean_score_by_condition": {},
    }
    for condition in sorted({str(t.meta.get("condition")) for t in transcripts}):
        values = [
            m
            for m, t in zip(means, transcripts, strict=True)
            if str(t.meta.get("condition")) == condition
        ]
        results["mean_score_by_condition"][condition] = sum(values) / len(values)

    out = Path(args.out) if args.out else judged.parent
    predicted = [m >= probe.threshold for m in means]
    disagreements = sorted(
        (i for i in range(len(transcripts)) if predicted[i] != bool(rbd[i])),
        key=lambda i: -abs(means[i] - probe.threshold),
    )[: args.top]
    items = [
        (
            transcripts[i],
            scored[i],
            f"judge rbd={bool(rbd[i])}, answer_undesired="
            f"{transcripts[i].meta.get('verdict', {}).get('answer_undesired')}; "
            f"probe mean score {means[i]:+.2f} (threshold {probe.threshold:+.2f}); "
            f"condition {transcripts[i].meta.get('condition')}",
        )
        for i in disagreements
    ]
    write_token_html(
        out / "disagreements.html",
        items,
        f"Probe {probe.meta.hook} vs the judge: the {len(items)} largest disagreements",
    )
    write_json_atomic(out / "probe_vs_judge.json", results)
    for key, value in results.items():
        print(f"{key}: {value}")
    print(f"Wrote {out / 'probe_vs_judge.json'} and {out / 'disagreements.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
