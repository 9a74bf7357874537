"""The SAE-features experiment as one function: train (or reuse) an SAE, rank its features by
how well they separate divergent from consistent answers, edit the top features during
forward passes, and compare the features' activations across fine-tuned variants.

:class:`SAEFeaturesConfig` is :class:`interp.sae.config.SAEConfig` (the SAE's own settings,
as for ``python -m interp.sae``) plus the experiment's; :func:`run_sae_features` writes
``results.json``, ``config.json``, ``summary.txt``, three figures and ``dashboard/`` under
``--out``. ``python experiments/sae_features.py`` is its command line.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import write_figure, write_json_atomic, write_text_atomic
from interp.config import ConfigError, model_options
from interp.models import LoadedModel, load_model
from interp.paths import cache_root
from interp.sae.analysis import analyse_features, write_feature_dashboard
from interp.sae.compare import compare_models
from interp.sae.config import SAEConfig
from interp.sae.figures import (
    feature_auroc_figure,
    intervention_figure,
    probe_comparison_figure,
)
from interp.sae.intervene import answer_prompts, clean_diffs, intervene, probe_score_change
from interp.sae.store import LoadedSAE, load_sae
from interp.sae.train import spread, train_sae
from probes import LogisticProbe


@dataclass
class SAEFeaturesConfig(SAEConfig):
    """SAE features of reason-based deception: quality, ranking, interventions, other models."""

    top: int = field(default=20, metadata={"help": "features ranked and reported"})
    dashboard_features: int = field(default=10, metadata={"help": "features shown"})
    intervene_features: int = field(default=3, metadata={"help": "top features edited"})
    intervene_prompts: int = field(default=8, metadata={"help": "held-out prompts"})
    amplify: float = field(default=4.0, metadata={"help": "scale of the amplified run"})
    models: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "other models to apply the SAE to",
            "default_text": "fine-tuned -refusal-/-rebuttal- variants in <cache>/models",
            "nargs": "*",
        },
    )
    compare_transcripts: int = field(default=48, metadata={"help": "for --models"})
    out: str | None = field(
        default=None,
        metadata={"help": "output folder", "default_text": "<cache>/experiments/sae_features"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.models is not None:
            self.models = tuple(self.models)
        for name in ("top", "dashboard_features", "intervene_features", "intervene_prompts"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    def sae_config(self) -> SAEConfig:
        """The SAE's own settings (what names and trains it)."""
        return SAEConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SAEConfig)})

    @property
    def root(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else cache_root()


def finetuned_variants(root: Path) -> list[str]:
    """Models saved under ``<root>/models/`` whose name holds ``-refusal-`` or ``-rebuttal-``."""
    models = root / "models"
    if not models.is_dir():
        return []
    return sorted(
        p.name
        for p in models.iterdir()
        if (p / "config.json").is_file() and ("-refusal-" in p.name or "-rebuttal-" in p.name)
    )


def _write_ranking_figures(analysis: Any, title: str, out: Path) -> None:
    ranking = analysis.ranking
    write_figure(
        feature_auroc_figure(ranking, f"Top SAE features, divergent vs consistent: {title}"),
        out / "feature_auroc.html",
    )
    write_figure(
        probe_comparison_figure(ranking, f"Sparse vs dense probe: {title}"),
        out / "probe_comparison.html",
    )


def run_interventions(
    config: SAEFeaturesConfig, model: LoadedModel, loaded: LoadedSAE, analysis: Any
) -> tuple[list[Any], list[Any]]:
    """Ablate (scale 0) and amplify each of the top features on held-out prompts cut after
    ``Answer:``: the change of log p(comply) - log p(refuse) and of a dense probe's score.
    Returns ``(prompts, results)``."""
    ranking = analysis.ranking
    test_transcripts = [analysis.transcripts[i] for i in analysis.test]
    prompts = answer_prompts(model.tokenizer, test_transcripts)
    prompts = [prompts[i] for i in spread(range(len(prompts)), config.intervene_prompts)]
    y = torch.tensor([tr.label for tr in analysis.transcripts])
    dense_c = ranking.probes[0].dense_c if ranking.probes else 0.01
    dense = LogisticProbe(c=dense_c).fit(
        analysis.feats.pooled_resid[analysis.train], y[analysis.train]
    )
    test_answers = analysis.answer_acts(analysis.test)
    clean = clean_diffs(model, prompts) if prompts else []
    interventions = []
    for s in ranking.top[: config.intervene_features]:
        for scale in (0.0, config.amplify):
            r = intervene(model, loaded.sae, loaded.hook, s.feature, scale, prompts, clean)
            r.probe_score_change = probe_score_change(
                dense, loaded.sae, test_answers, s.feature, scale
            )
            interventions.append(r)
    return prompts, interventions


def compare_variants(
    config: SAEFeaturesConfig,
    model: LoadedModel,
    loaded: LoadedSAE,
    analysis: Any,
    others: list[str],
) -> dict[str, Any]:
    """The same SAE applied to ``model`` and each of ``others`` on held-out transcripts."""
    rows = spread(analysis.test, config.compare_transcripts)
    models = [model] + [load_model(spec, **model_options(config)) for spec in others]
    shared = load_sae(loaded.path, model, hook=loaded.hook)
    return compare_models(
        shared,
        models,
        [analysis.transcripts[i] for i in rows],
        cache_dir=config.root / "activations",
        batch_size=config.forward_batch_size,
        progress=config.progress,
    ).to_dict()


def summary_text(
    config: SAEFeaturesConfig,
    loaded: LoadedSAE,
    analysis: Any,
    interventions: list[Any],
    comparison: dict[str, Any] | None,
    index: Path,
    timings: dict[str, float],
) -> str:
    """What ``summary.txt`` holds (and the run prints)."""
    ranking = analysis.ranking
    lines = [
        loaded.summary(),
        "",
        f"Top features (ranked on {ranking.n_train} training "
        f"transcripts, scored on {ranking.n_test} held-out):",
    ]
    for s in ranking.top[: config.dashboard_features]:
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
    return "\n".join(lines)


def _timed(timings: dict[str, float], key: str, start: float) -> None:
    timings[key] = time.perf_counter() - start


def run_sae_features(config: SAEFeaturesConfig) -> dict[str, Any]:
    """Run every step, print the SAE's quality and the summary, write the outputs; returns
    what ``results.json`` holds."""
    out = Path(config.out) if config.out else config.root / "experiments" / "sae_features"
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    model = load_model(config.model, **model_options(config))
    _timed(timings, "load_model", started)
    t = time.perf_counter()
    loaded = train_sae(config.sae_config(), model)
    _timed(timings, "train_sae_total (cache + train + measure, 0 if reused)", t)
    print(loaded.summary())

    t = time.perf_counter()
    analysis = analyse_features(model, loaded, top=config.top, progress=config.progress)
    index = write_feature_dashboard(
        analysis, loaded, model, out / "dashboard", n=config.dashboard_features
    )
    _timed(timings, "analysis", t)
    title = f"{model.name} {loaded.hook}, SAE {loaded.path.name}"
    _write_ranking_figures(analysis, title, out)

    t = time.perf_counter()
    prompts, interventions = run_interventions(config, model, loaded, analysis)
    _timed(timings, "interventions", t)
    if interventions:
        write_figure(
            intervention_figure(interventions, f"Feature edits on held-out prompts: {title}"),
            out / "interventions.html",
        )

    others = list(config.models) if config.models is not None else finetuned_variants(config.root)
    comparison = None
    if others:
        t = time.perf_counter()
        comparison = compare_variants(config, model, loaded, analysis, others)
        _timed(timings, "compare_models", t)
    _timed(timings, "total", started)

    results = {
        "sae": {"path": str(loaded.path), "manifest": loaded.manifest.__dict__},
        "features": analysis.to_dict(),
        "interventions": [r.to_dict() for r in interventions],
        "intervention_prompts": [p.id for p in prompts],
        "compare_models": comparison,
        "compared_models_requested": others,
        "timings_s": timings,
    }
    write_json_atomic(out / "results.json", results)
    write_json_atomic(out / "config.json", config.to_dict())
    text = summary_text(config, loaded, analysis, interventions, comparison, index, timings)
    write_text_atomic(out / "summary.txt", text + "\n")
    print(text)
    return results
