"""Experiment: SAE features of reason-based deception on the default model (issue 5).

1. Train (or reuse) a TopK SAE at layer 14 (:func:`interp.sae.train_sae`) on per-token reply
   activations of the role-play transcripts (training scenarios only) and benign chat, and
   report its quality (explained variance, L0, dead features, next-token loss increase).
2. Rank features by AUROC of divergent vs consistent answers on the probes' training
   scenarios, score them on the held-out ones, compare sparse probes on the top-k features
   with the dense probe, and write an HTML dashboard of the top features.
3. Ablate (scale 0) and amplify (``--amplify``) the top features during forward passes over
   held-out prompts cut after ``Answer:``; measure the change of log p(comply) - log p(refuse)
   and of the dense probe's score.
4. With ``--models`` (default: fine-tuned variants found under ``<cache>/models/`` whose name
   holds ``-refusal-`` or ``-rebuttal-``), apply the same SAE to each model on held-out
   transcripts and report the features whose mean activation changed most.

Writes ``results.json``, ``config.json``, ``summary.txt``, three figures (HTML) and
``dashboard/`` under ``--out`` (default ``<cache>/experiments/sae_features``).

Run: ``python experiments/sae_features.py`` (SAE flags as for ``python -m interp.sae``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from interp.artifacts import write_figure, write_json_atomic, write_text_atomic
from interp.cli import config_from_args, parser_for
from interp.models import load_model
from interp.paths import cache_root
from interp.sae import SAEConfig, load_sae, train_sae
from interp.sae.__main__ import summary
from interp.sae.analysis import analyse_features, write_feature_dashboard
from interp.sae.compare import compare_models
from interp.sae.figures import (
    feature_auroc_figure,
    intervention_figure,
    probe_comparison_figure,
)
from interp.sae.intervene import answer_prompts, clean_diffs, intervene, probe_score_change
from interp.sae.train import spread
from probes import LogisticProbe


def finetuned_variants(root: Path) -> list[str]:
    models = root / "models"
    if not models.is_dir():
        return []
    return sorted(
        p.name
        for p in models.iterdir()
        if (p / "config.json").is_file() and ("-refusal-" in p.name or "-rebuttal-" in p.name)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for(SAEConfig, prog="experiments/sae_features.py")
    parser.description = __doc__.split("\n\n")[0]
    extra = parser.add_argument_group("experiment")
    extra.add_argument("--top", type=int, default=20, help="features ranked and reported")
    extra.add_argument("--dashboard-features", type=int, default=10, help="features shown")
    extra.add_argument("--intervene-features", type=int, default=3, help="top features edited")
    extra.add_argument("--intervene-prompts", type=int, default=8, help="held-out prompts")
    extra.add_argument("--amplify", type=float, default=4.0, help="scale of the amplified run")
    extra.add_argument(
        "--models",
        nargs="*",
        default=None,
        help="other models to apply the SAE to "
        "(default: fine-tuned -refusal-/-rebuttal- variants in <cache>/models)",
    )
    extra.add_argument("--compare-transcripts", type=int, default=48, help="for --models")
    extra.add_argument("--out", default=None, help="output folder")
    args = parser.parse_args(argv)
    config = config_from_args(SAEConfig, args)
    root = Path(config.cache_dir) if config.cache_dir else cache_root()
    out = Path(args.out) if args.out else root / "experiments" / "sae_features"
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    model = load_model(config.model, device=config.device)
    timings["load_model"] = time.perf_counter() - started
    t = time.perf_counter()
    loaded = train_sae(config, model)
    timings["train_sae_total (cache + train + measure, 0 if reused)"] = time.perf_counter() - t
    print(summary(loaded))

    t = time.perf_counter()
    analysis = analyse_features(model, loaded, top=args.top, progress=config.progress)
    index = write_feature_dashboard(
        analysis, loaded, model, out / "dashboard", n=args.dashboard_features
    )
    timings["analysis"] = time.perf_counter() - t
    ranking = analysis.ranking
    title = f"{model.name} {loaded.hook}, SAE {loaded.path.name}"
    write_figure(
        feature_auroc_figure(ranking, f"Top SAE features, divergent vs consistent: {title}"),
        out / "feature_auroc.html",
    )
    write_figure(
        probe_comparison_figure(ranking, f"Sparse vs dense probe: {title}"),
        out / "probe_comparison.html",
    )

    # interventions on held-out prompts
    t = time.perf_counter()
    test_transcripts = [analysis.transcripts[i] for i in analysis.test]
    prompts = answer_prompts(model.tokenizer, test_transcripts)
    prompts = [prompts[i] for i in spread(range(len(prompts)), args.intervene_prompts)]
    y = torch.tensor([tr.label for tr in analysis.transcripts])
    dense_c = ranking.probes[0].dense_c if ranking.probes else 0.01
    dense = LogisticProbe(c=dense_c).fit(
        analysis.feats.pooled_resid[analysis.train], y[analysis.train]
    )
    test_answers = analysis.answer_acts(analysis.test)
    clean = clean_diffs(model, prompts) if prompts else []
    interventions = []
    for s in ranking.top[: args.intervene_features]:
        for scale in (0.0, args.amplify):
            r = intervene(model, loaded.sae, loaded.hook, s.feature, scale, prompts, clean)
            r.probe_score_change = probe_score_change(
                dense, loaded.sae, test_answers, s.feature, scale
            )
            interventions.append(r)
    timings["interventions"] = time.perf_counter() - t
    if interventions:
        write_figure(
            intervention_figure(interventions, f"Feature edits on held-out prompts: {title}"),
            out / "interventions.html",
        )

    # across models
    others = args.models if args.models is not None else finetuned_variants(root)
    comparison = None
    if others:
        t = time.perf_counter()
        rows = spread(analysis.test, args.compare_transcripts)
        models = [model] + [load_model(spec, device=config.device) for spec in others]
        shared = load_sae(loaded.path, model, hook=loaded.hook)
        comparison = compare_models(
            shared,
            models,
            [analysis.transcripts[i] for i in rows],
            cache_dir=root / "activations",
            batch_size=config.forward_batch_size,
            progress=config.progress,
        ).to_dict()
        timings["compare_models"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started

    results = {
        "sae": {
            "path": str(loaded.path),
            "manifest": loaded.manifest.__dict__,
        },
        "features": analysis.to_dict(),
        "interventions": [r.to_dict() for r in interventions],
        "intervention_prompts": [p.id for p in prompts],
        "compare_models": comparison,
        "compared_models_requested": others,
        "timings_s": timings,
    }
    write_json_atomic(out / "results.json", results)
    write_json_atomic(
        out / "config.json",
        {**config.to_dict(), **{k: v for k, v in vars(args).items() if k not in config.to_dict()}},
    )
    lines = [
        summary(loaded),
        "",
        f"Top features (ranked on {ranking.n_train} training "
        f"transcripts, scored on {ranking.n_test} held-out):",
    ]
    for s in ranking.top[: args.dashboard_features]:
        ctx = analysis.contexts[s.feature][:2]
        lines.append(
            f"  f{s.feature:<5} train {s.train_auroc:.3f} held-out {s.test_auroc:.3f} "
            f"({'divergent' if s.direction > 0 else 'consistent'}), fires on "
            f"{s.frac_active_train:.0%}: " + " | ".join(c.context for c in ctx)
        )
    for p in ranking.probes:
        lines.append(
            f"  sparse probe on top-{p.k}: held-out AUROC {p.sparse_test_auroc:.3f} "
            f"(dense probe {p.dense_test_auroc:.3f}, C {p.dense_c:g})"
        )
    for r in interventions:
        lines.append(
            f"  f{r.feature} x{r.scale:g}: log p(comply)-log p(refuse) {r.clean_diff:+.3f} -> "
            f"{r.edited_diff:+.3f} (change {r.change:+.3f} +- {r.change_sd:.3f}, "
            f"{r.n_prompts} prompts); dense probe score {r.probe_score_change:+.3f}"
        )
    if comparison:
        for name, shifts in comparison["top"].items():
            lines.append(
                f"  {name} vs {comparison['base_model']}: "
                + ", ".join(f"f{s['feature']} {s['change']:+.4f}" for s in shifts[:5])
            )
    else:
        lines.append("  across models: no fine-tuned variants found (pass --models)")
    lines.append(f"  dashboard: {index}")
    lines.append("  timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    text = "\n".join(lines)
    write_text_atomic(out / "summary.txt", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
