"""``run_matrix(config)``: train a probe on each set, test it on each, per layer.

Composes the probe pipeline's parts: datasets from the registry (public sets read from the
user's copy), the scenario split and its checks (:func:`interp.probe.pipeline.split_trainable`),
the activation cache (each set cached once per token selection, so adding a set costs that
set's forward passes only), :class:`interp.probe.pipeline.ProbeFitter` (C chosen by
cross-validation over the training set's scenarios), and the controls of
:mod:`interp.probe.controls` (layer 0, random directions, stance AUROCs). Each probe is
fitted on its set's training scenarios; its own set is scored on the held-out scenarios,
every other set on all its rows. Recall is read at the threshold that flags 1% of the
control set (ordinary chat), read with the test set's token selection.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.cache import ActivationSet, CacheRequest, cache_activations
from interp.config import ConfigError, model_options
from interp.data.datasets import BUILTIN_PREFIX, DATASETS, load_dataset, subset_groups
from interp.data.external import ExternalSet
from interp.data.transcripts import Transcript
from interp.hooks import CONTROL_HOOK, hook_name
from interp.models import LoadedModel, load_model
from interp.paths import cache_root
from interp.probe.config import ProbeConfig
from interp.probe.controls import random_direction_aurocs, report_set, stance_auroc
from interp.probe.matrix.config import MatrixConfig
from interp.probe.matrix.results import MatrixCell, MatrixRun, SetSummary
from interp.probe.pipeline import ProbeFitter, scores_of, split_trainable
from probes import Probe, auroc
from probes.metrics import threshold_at_fpr

#: Stances of the built-in sets (and of JSONL files in the project's format).
BUILTIN_STANCES = (("answer", "comply"), ("reasoning", "ethical"))


@dataclass
class MatrixSet:
    """One set: its transcripts, token selection, stance columns, split and activations."""

    spec: str
    name: str
    transcripts: list[Transcript]
    tokens: str
    stances: tuple[tuple[str, str], ...]
    train_rows: Tensor
    test_rows: Tensor
    grader: str | None = None
    acts: ActivationSet | None = None

    @property
    def y(self) -> Tensor:
        return torch.tensor([t.label for t in self.transcripts])


def set_name(spec: str) -> str:
    """``builtin:apollo-roleplaying=DIR`` -> ``apollo-roleplaying``; a file -> its stem."""
    if spec.startswith(BUILTIN_PREFIX):
        return spec[len(BUILTIN_PREFIX) :].partition("=")[0]
    return Path(spec).stem


def _registered(spec: str) -> Any:
    name = set_name(spec)
    return DATASETS.get(name) if spec.startswith(BUILTIN_PREFIX) and name in DATASETS else None


def probe_config(config: MatrixConfig, spec: str, tokens: str) -> ProbeConfig:
    """The :class:`ProbeConfig` of the probes trained on ``spec`` (what the fitter and the
    split read)."""
    pc = ProbeConfig(
        model=config.model,
        dataset=spec,
        control_dataset=None,
        layers=config.layers,
        site=config.site,
        probe=config.probe,
        c=config.c,
        test_fraction=config.test_fraction,
        seed=config.seed,
        device=config.device,
        dtype=config.dtype,
    )
    pc.tokens = tokens  # a marker selection (after:Action:) is not one of the CLI's choices
    return pc


def read_set(config: MatrixConfig, spec: str) -> MatrixSet:
    """One set, read, capped, checked (both labels) and split, before any model loads."""
    builder = _registered(spec)
    external = isinstance(builder, ExternalSet)
    transcripts = load_dataset(spec)
    if config.max_groups is not None:
        transcripts = subset_groups(transcripts, config.max_groups, config.seed)
    if any(t.label is None for t in transcripts):
        raise ConfigError(f"{spec}: every transcript needs a label 0 or 1 to train and test")
    tokens = builder.tokens if external else "answer"
    train, test = split_trainable(transcripts, probe_config(config, spec, tokens))
    return MatrixSet(
        spec=spec,
        name=set_name(spec),
        transcripts=transcripts,
        tokens=tokens,
        stances=builder.stances if external else BUILTIN_STANCES,
        train_rows=train,
        test_rows=test,
        grader=builder.grader if external else None,
    )


def _stances(s: MatrixSet, rows: list[Transcript], scores: Tensor) -> dict[str, float | None]:
    """Stance AUROCs of ``scores``; a stance that equals the label is left out."""
    out = {}
    for key, positive in s.stances:
        if all((t.meta.get(key) == positive) == bool(t.label) for t in rows):
            continue
        out[f"{key}={positive}"] = stance_auroc(rows, scores, key, positive)
    return out


def evaluate_cell(
    train: MatrixSet,
    test: MatrixSet,
    layer: int,
    probes: dict[str, Probe],
    control: Tensor,
    config: MatrixConfig,
) -> MatrixCell:
    """The probe of ``train`` at ``layer`` scored on ``test`` beside its controls;
    ``control`` holds its scores of the control set."""
    hook = hook_name(layer, config.site)
    assert test.acts is not None
    rows = test.test_rows if train is test else torch.arange(len(test.transcripts))
    chosen = [test.transcripts[i] for i in rows.tolist()]
    scores = scores_of(probes[hook], hook, test.acts, rows)
    report = report_set(scores, chosen, test.acts, rows, probes[hook].threshold, config.seed)
    y = test.y[rows]
    threshold = threshold_at_fpr(control, 0.01)
    m = report.metrics
    layer0 = auroc(y, scores_of(probes[CONTROL_HOOK], CONTROL_HOOK, test.acts, rows))
    _, random_p95 = random_direction_aurocs(test.acts[hook][rows], y, config.n_random, config.seed)
    return MatrixCell(
        train=train.name,
        test=test.name,
        layer=layer,
        n=len(rows),
        n_positive=int(y.sum()),
        auroc=m.auroc if m else None,
        auroc_low=m.auroc_low if m else None,
        auroc_high=m.auroc_high if m else None,
        recall_at_1pct_control=float((scores[y == 1] > threshold).float().mean()),
        flagged_honest_at_1pct_control=float((scores[y == 0] > threshold).float().mean()),
        recall_at_1pct_own=m.recall_at_1pct_fpr if m else None,
        layer0_auroc=layer0,
        random_auroc_p95=random_p95,
        stances=_stances(test, chosen, scores),
    )


def summary(s: MatrixSet) -> SetSummary:
    assert s.acts is not None
    return SetSummary(
        spec=s.spec,
        name=s.name,
        n=len(s.transcripts),
        n_positive=int(s.y.sum()),
        n_groups=len({t.group for t in s.transcripts}),
        n_train=len(s.train_rows),
        n_test=len(s.test_rows),
        tokens=s.tokens,
        n_marker_missing=int((~s.acts.answer_found).sum()) if s.tokens != "reply" else 0,
        n_truncated=int(s.acts.truncated.sum()),
        grader=s.grader,
    )


def default_out_dir(config: MatrixConfig, model_name: str, root: Path) -> Path:
    slug = Path(model_name).name
    layers = "-".join(map(str, config.layers))
    names = "+".join(set_name(s) for s in config.sets)
    cap = f"-max{config.max_groups}" if config.max_groups else ""
    return root / "matrix" / slug / f"{names}-{config.site}-L{layers}{cap}-seed{config.seed}"


def run_matrix(config: MatrixConfig, model: LoadedModel | None = None) -> MatrixRun:
    """Read every set (errors before the model loads), cache, fit, score every cell, save
    the run (:func:`interp.probe.matrix.report.save_matrix`)."""
    from interp.probe.matrix.report import save_matrix

    root = Path(config.cache_dir) if config.cache_dir else cache_root()
    sets = [read_set(config, spec) for spec in config.sets]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ConfigError(f"sets {config.sets}: two sets share a name ({names}); rename a file")
    control = load_dataset(config.control_dataset)
    model = model or load_model(config.model, **model_options(config), max_layer=max(config.layers))
    for layer in config.layers:
        model.check_layer(layer)
    hooks = [hook_name(layer, config.site) for layer in config.layers]
    request = CacheRequest(
        batch_size=config.batch_size,
        max_tokens=config.max_tokens,
        cache_dir=root / "activations",
        progress=config.progress,
    )
    for s in sets:
        s.acts = cache_activations(
            model, s.transcripts, [*hooks, CONTROL_HOOK], s.tokens, request=request
        )
    control_acts = {
        t: cache_activations(model, control, hooks, t, request=request)
        for t in {s.tokens for s in sets}
    }
    cells, chosen_c = [], {}
    every_row = torch.arange(len(control))
    for train in sets:
        assert train.acts is not None
        pc = probe_config(config, train.spec, train.tokens)
        groups = [t.group for t in train.transcripts]
        fitter = ProbeFitter(pc, model, train.acts, train.y, train.train_rows, groups)
        probes = fitter.fit([CONTROL_HOOK, *hooks])
        chosen_c[train.name] = dict(fitter.chosen_c)
        for test in sets:
            for layer, hook in zip(config.layers, hooks, strict=True):
                ctrl = scores_of(probes[hook], hook, control_acts[test.tokens], every_row)
                cells.append(evaluate_cell(train, test, layer, probes, ctrl, config))
    run = MatrixRun(
        config=config,
        model_name=model.name,
        model_fingerprint=model.fingerprint,
        date=datetime.date.today().isoformat(),
        control=config.control_dataset,
        control_n=len(control),
        sets=[summary(s) for s in sets],
        cells=cells,
        chosen_c=chosen_c,
    )
    run.out_dir = Path(config.out) if config.out else default_out_dir(config, model.name, root)
    save_matrix(run)
    return run
