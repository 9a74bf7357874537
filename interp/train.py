"""``train_probe(config)``: the probe pipeline end to end, with its controls.

Steps: load the model and data, cache pooled activations of every requested layer plus the
layer-0 control (token embeddings, ``blocks.0.hook_resid_pre``) in one forward pass, split by
scenario, fit one probe per layer on the training scenarios, and evaluate on held-out
scenarios beside four controls:

- **layer 0**: the same kind of probe fitted on token embeddings. Near 0.5 unless the
  dataset's wording leaks the label.
- **random direction**: AUROC of random unit directions at the same layer (mean over
  ``n_random``; the 95th percentile of ``max(a, 1 - a)`` says how far chance alone gets).
- **answer stance / reasoning stance**: the trained probe's AUROC against "the answer
  complies" and "the reasoning is ethical" alone. A probe that reads divergence, not one of
  its two ingredients, scores near 0.5 on both.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.cache import ActivationSet, cache_activations
from interp.config import ConfigError, ProbeConfig
from interp.datasets import load_dataset, subset_groups
from interp.hooks import check_layer, hook_name
from interp.models import LoadedModel, load_model
from interp.paths import cache_root
from interp.transcripts import Transcript, dataset_hash
from probes import (
    Evaluation,
    Probe,
    ProbeMeta,
    auroc,
    evaluate,
    fit_per_layer,
    group_split,
    make_probe,
)
from probes.metrics import threshold_at_fpr
from probes.select import select_c

CONTROL_HOOK = hook_name(0, "resid_pre")


@dataclass
class SetReport:
    """A trained probe scored on one labelled set."""

    metrics: Evaluation | None
    answer_stance_auroc: float | None
    reasoning_stance_auroc: float | None
    n: int
    n_answer_missing: int
    n_truncated: int


@dataclass
class LayerResult:
    layer: int
    hook: str
    c: float | None  # the logistic probe's C (chosen by cross-validation unless given)
    train_auroc: float
    test: SetReport
    random_auroc_mean: float
    random_auroc_p95: float
    control_recall: float | None = None  # recall of held-out divergent replies at the
    control_flagged_consistent: float | None = None  # control-set 1%-FPR threshold
    eval: SetReport | None = None


@dataclass
class ProbeRun:
    """Everything a probe run produced; ``to_json`` is what ``--json`` writes."""

    config: ProbeConfig
    model_name: str
    model_fingerprint: str
    n_layers: int
    dataset_hash: str
    n_transcripts: int
    train_groups: list[str]
    test_groups: list[str]
    layer0: SetReport
    layer0_c: float | None
    layers: list[LayerResult]
    probes: dict[int, Probe] = field(repr=False)
    out_dir: Path | None = None

    def result(self, layer: int) -> LayerResult:
        for r in self.layers:
            if r.layer == layer:
                return r
        raise KeyError(f"layer {layer} was not probed; probed: {[r.layer for r in self.layers]}")

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": {
                "name": self.model_name,
                "fingerprint": self.model_fingerprint,
                "n_layers": self.n_layers,
            },
            "data": {
                "dataset_hash": self.dataset_hash,
                "n_transcripts": self.n_transcripts,
                "train_groups": self.train_groups,
                "test_groups": self.test_groups,
            },
            "layer0_control": {**asdict(self.layer0), "c": self.layer0_c},
            "layers": [asdict(r) for r in self.layers],
        }


def _stance_auroc(
    transcripts: Sequence[Transcript], scores: Tensor, key: str, positive: str
) -> float | None:
    """AUROC of ``scores`` against ``meta[key] == positive``, over the transcripts whose
    ``meta`` records that stance (judged data may leave some undecided)."""
    known = [(i, t.meta[key]) for i, t in enumerate(transcripts) if t.meta.get(key) is not None]
    target = torch.tensor([int(v == positive) for _, v in known])
    if not known or not 0 < int(target.sum()) < len(target):
        return None
    return auroc(target, scores[[i for i, _ in known]])


def report_set(
    scores: Tensor,
    transcripts: Sequence[Transcript],
    acts: ActivationSet,
    rows: Tensor,
    threshold: float,
    seed: int,
) -> SetReport:
    """Metrics of ``scores`` (for ``transcripts``, rows ``rows`` of ``acts``)."""
    labels = [t.label for t in transcripts]
    metrics = None
    if all(v is not None for v in labels) and 0 < sum(labels) < len(labels):  # type: ignore[arg-type]
        metrics = evaluate(
            torch.tensor(labels),
            scores,
            threshold,
            groups=[t.group for t in transcripts],
            seed=seed,
        )
    return SetReport(
        metrics=metrics,
        answer_stance_auroc=_stance_auroc(transcripts, scores, "answer", "comply"),
        reasoning_stance_auroc=_stance_auroc(transcripts, scores, "reasoning", "ethical"),
        n=len(transcripts),
        n_answer_missing=int((~acts.answer_found[rows]).sum()),
        n_truncated=int(acts.truncated[rows].sum()),
    )


def random_direction_aurocs(X: Tensor, y: Tensor, n: int, seed: int) -> tuple[float, float]:
    """Mean AUROC of ``n`` random unit directions, and the 95th percentile of max(a, 1-a)."""
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(X.shape[1], n, generator=gen)
    scores = (X.cpu() @ directions).T
    values = [auroc(y, s) for s in scores]
    folded = sorted(max(v, 1 - v) for v in values)
    return statistics.fmean(values), folded[min(len(folded) - 1, int(0.95 * len(folded)))]


def default_out_dir(config: ProbeConfig, model_name: str, root: Path) -> Path:
    model_slug = Path(model_name).name if "/" in model_name else model_name
    data_slug = (
        Path(config.dataset).stem
        if not config.dataset.startswith("builtin:")
        else (config.dataset.removeprefix("builtin:"))
    )
    layers = (
        f"L{config.layers[0]}"
        if len(config.layers) == 1
        else f"L{config.layers[0]}-{config.layers[-1]}x{len(config.layers)}"
    )
    return (
        root
        / "runs"
        / model_slug
        / f"{data_slug}-{config.site}-{config.tokens}-{config.probe}-{layers}"
    )


def train_probe(config: ProbeConfig, model: LoadedModel | None = None) -> ProbeRun:
    """Run the pipeline for ``config``; pass ``model`` to reuse a loaded one. Writes the
    probes, metrics, resolved config and figure (see :mod:`interp.report`)."""
    from interp.report import save_run

    root = Path(config.cache_dir) if config.cache_dir else cache_root()
    # Read every dataset before loading the model, so bad input fails in seconds.
    transcripts = load_dataset(config.dataset)
    control_transcripts = load_dataset(config.control_dataset) if config.control_dataset else []
    eval_transcripts = load_dataset(config.eval_dataset) if config.eval_dataset else []
    if config.max_scenarios is not None:
        transcripts = subset_groups(transcripts, config.max_scenarios, config.seed)
    unlabelled = [t.id for t in transcripts if t.label is None]
    if unlabelled:
        raise ConfigError(
            f"{config.dataset}: {len(unlabelled)} transcripts have no label "
            f"(e.g. {unlabelled[0]}); training needs 'label' on every line "
            "(score unlabelled data with --eval-dataset)"
        )
    model = model or load_model(config.model, device=config.device)
    for layer in config.layers:
        check_layer(layer, model.n_layers)
    hooks = [hook_name(layer, config.site) for layer in config.layers]
    cache_kwargs: dict[str, Any] = dict(
        tokens=config.tokens,
        batch_size=config.batch_size,
        max_tokens=config.max_tokens,
        cache_dir=root / "activations",
        progress=config.progress,
    )
    acts = cache_activations(model, transcripts, [*hooks, CONTROL_HOOK], **cache_kwargs)
    y = torch.tensor([t.label for t in transcripts])
    groups = [t.group for t in transcripts]
    train, test = group_split(
        groups,
        config.test_fraction,
        config.seed,
        strata=[str(t.meta.get("domain", "")) for t in transcripts],
    )
    test_transcripts = [transcripts[i] for i in test.tolist()]

    device = model.device

    chosen_c: dict[str, float] = {}

    def new_probe(hook: str) -> Probe:
        settings: dict[str, Any] = {}
        if config.probe == "logistic":
            c = config.c
            if c is None:  # cross-validate over training scenarios only
                train_groups = [groups[i] for i in train.tolist()]
                c, _ = select_c(
                    acts[hook][train].to(device),
                    y[train].to(device),
                    train_groups,
                    n_folds=min(4, len(set(train_groups))),
                    seed=config.seed,
                )
            settings["c"] = chosen_c[hook] = c
        meta = ProbeMeta(model.name, model.fingerprint, hook, config.tokens)
        return make_probe(config.probe, meta=meta, **settings)

    def scores_of(probe: Probe, hook: str, data: ActivationSet, rows: Tensor) -> Tensor:
        return probe.score(data[hook][rows].to(device)).cpu()

    layer0_probe = new_probe(CONTROL_HOOK).fit(
        acts[CONTROL_HOOK][train].to(device), y[train].to(device)
    )
    layer0 = report_set(
        scores_of(layer0_probe, CONTROL_HOOK, acts, test),
        test_transcripts,
        acts,
        test,
        layer0_probe.threshold,
        config.seed,
    )

    control_acts = eval_acts = None
    if control_transcripts:
        control_acts = cache_activations(model, control_transcripts, hooks, **cache_kwargs)
    if eval_transcripts:
        eval_acts = cache_activations(model, eval_transcripts, hooks, **cache_kwargs)

    per_hook = fit_per_layer(
        {h: acts[h].to(device) for h in hooks}, y.to(device), train.to(device), new_probe
    )
    results, probes = [], {}
    for layer, hook in zip(config.layers, hooks, strict=True):
        probe = probes[layer] = per_hook[hook]
        test_scores = scores_of(probe, hook, acts, test)
        rand_mean, rand_p95 = random_direction_aurocs(
            acts[hook][test], y[test], config.n_random, config.seed
        )
        result = LayerResult(
            layer=layer,
            hook=hook,
            c=chosen_c.get(hook),
            train_auroc=auroc(y[train], scores_of(probe, hook, acts, train)),
            test=report_set(
                test_scores, test_transcripts, acts, test, probe.threshold, config.seed
            ),
            random_auroc_mean=rand_mean,
            random_auroc_p95=rand_p95,
        )
        if control_acts is not None:
            all_rows = torch.arange(len(control_transcripts))
            threshold = threshold_at_fpr(scores_of(probe, hook, control_acts, all_rows), 0.01)
            probe.meta.extra["threshold_1pct_fpr_on_control"] = threshold
            positives, negatives = test_scores[y[test] == 1], test_scores[y[test] == 0]
            result.control_recall = float((positives > threshold).float().mean())
            result.control_flagged_consistent = float((negatives > threshold).float().mean())
        if eval_acts is not None:
            rows = torch.arange(len(eval_transcripts))
            result.eval = report_set(
                scores_of(probe, hook, eval_acts, rows),
                eval_transcripts,
                eval_acts,
                rows,
                probe.threshold,
                config.seed,
            )
        results.append(result)

    run = ProbeRun(
        config=config,
        model_name=model.name,
        model_fingerprint=model.fingerprint,
        n_layers=model.n_layers,
        dataset_hash=dataset_hash(transcripts),
        n_transcripts=len(transcripts),
        train_groups=sorted({groups[i] for i in train.tolist()}),
        test_groups=sorted({groups[i] for i in test.tolist()}),
        layer0=layer0,
        layer0_c=chosen_c.get(CONTROL_HOOK),
        layers=results,
        probes=probes,
    )
    run.out_dir = Path(config.out) if config.out else default_out_dir(config, model.name, root)
    save_run(run)
    return run
