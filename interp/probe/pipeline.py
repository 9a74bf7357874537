"""``train_probe(config)``: the probe pipeline end to end, with its controls.

Steps, each a function below: read every dataset (before the model loads, so bad input fails
in seconds); cache pooled activations of every requested layer plus the layer-0 control in
one forward pass; split by scenario (:func:`interp.data.split.split_transcripts`, the split
fine-tuning and SAEs share); fit one probe per layer on the training scenarios (logistic C
by cross-validation over training scenarios unless given); evaluate on held-out scenarios
beside the controls of :mod:`interp.probe.controls`; save the run
(:mod:`interp.probe.report`).

A hook whose in-memory fit would pass :data:`MAX_IN_MEMORY_BYTES` (:func:`in_memory_bytes`) is
fitted, and its C chosen, streaming from the cache shard by shard (:mod:`probes.streaming`:
the same objective, folds and grid); a set whose vectors pass it is scored the same way.

With ``erase_stances`` (:mod:`interp.probe.erasure`) the fits and evaluations run twice: on
the cached activations (the run's ``before_erasure``), then on every set read through one
LEACE eraser per hook, fitted on the training rows only (streamed from the cache, so hooks
past the budget are erased too); the probes kept are the second ones, each with its eraser.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.artifacts import check_same
from interp.cache import ActivationSet, CacheRequest, cache_activations
from interp.config import ConfigError, model_options
from interp.data.datasets import load_dataset, subset_groups
from interp.data.split import split_transcripts
from interp.data.transcripts import Transcript, dataset_hash
from interp.hooks import CONTROL_HOOK, hook_name
from interp.locks import folder_lock
from interp.models import LoadedModel, load_model
from interp.paths import cache_root
from interp.probe.config import ProbeConfig
from interp.probe.controls import direction_aurocs, random_direction_aurocs, report_set
from interp.probe.erased_probe import ErasedProbe
from interp.probe.erasure import (
    ErasureError,
    erased_view,
    fit_stance_erasers,
    training_stances,
)
from interp.probe.results import MODEL_DTYPE, BeforeErasure, LayerResult, ProbeRun, SetReport
from probes import Probe, ProbeMeta, auroc, fit_per_layer, make_probe
from probes.batched import select_c_many
from probes.directions import random_directions
from probes.metrics import threshold_at_fpr
from probes.streaming import fit_streaming, select_c_streaming

#: Memory budget (bytes) of one hook's in-memory fit or scoring: above it, the pipeline
#: streams that hook from the cache instead (same results up to floating-point sums).
MAX_IN_MEMORY_BYTES = 2 << 30


def in_memory_bytes(n_rows: int, n_train: int, d: int, select_c: bool) -> int:
    """Estimated peak of fitting one hook in memory: its ``n_rows x d`` float32 matrix, then
    ``LogisticProbe``'s float64 standardised training rows and a float64 temporary of the same
    size; choosing C by the batched dual solver adds three float64 ``n_train x n_train``
    matrices for each of up to 4 folds."""
    fit = 4 * n_rows * d + 16 * n_train * d
    return max(fit, 96 * n_train * n_train) if select_c else fit


@dataclass
class Datasets:
    """The run's transcripts: training (with its scenario split: row indices of the training
    and held-out scenarios), control and eval sets."""

    train: list[Transcript]
    train_rows: Tensor
    test_rows: Tensor
    control: list[Transcript]
    eval: list[Transcript]


def read_datasets(config: ProbeConfig) -> Datasets:
    """Every dataset of ``config``, checked; training data must be labelled."""
    transcripts = load_dataset(config.dataset)
    control = load_dataset(config.control_dataset) if config.control_dataset else []
    # The eval set is only scored, never split: a line without "group" may let its id stand in.
    eval_set = load_dataset(config.eval_dataset, require_group=False) if config.eval_dataset else []
    if config.max_scenarios is not None:
        transcripts = subset_groups(transcripts, config.max_scenarios, config.seed)
    unlabelled = [t.id for t in transcripts if t.label is None]
    if unlabelled:
        raise ConfigError(
            f"{config.dataset}: {len(unlabelled)} transcripts have no label "
            f"(e.g. {unlabelled[0]}); training needs 'label' on every line "
            "(score unlabelled data with --eval-dataset)"
        )
    train, test = split_trainable(transcripts, config)
    return Datasets(transcripts, train, test, control, eval_set)


def split_trainable(
    transcripts: Sequence[Transcript], config: ProbeConfig
) -> tuple[Tensor, Tensor]:
    """The scenario split ``(train, test)`` rows, refusing before any forward pass a training
    set the pipeline cannot fit and test: both labels on each side, at least 2 training
    scenarios (the cross-validation of C splits them) and at least 1 held-out scenario."""
    labels = {t.label for t in transcripts}
    if labels != {0, 1}:
        raise ConfigError(
            f"{config.dataset}: every transcript has label {sorted(labels)}; a probe needs "
            "both labels 0 and 1 (add transcripts of the other label)"
        )
    train, test = split_transcripts(transcripts, config.test_fraction, config.seed)
    for side, rows, least in (("training", train, 2), ("held-out", test, 1)):
        chosen = [transcripts[i] for i in rows.tolist()]
        n_groups = len({t.group for t in chosen})
        if n_groups < least or {t.label for t in chosen} != {0, 1}:
            raise ConfigError(
                f"{config.dataset}: the {side} side of the split (seed {config.seed}, "
                f"test_fraction {config.test_fraction}) holds {n_groups} scenarios with labels "
                f"{sorted({t.label for t in chosen})}; it needs at least {least} scenario(s) "
                "and both labels: use more scenarios (--max-scenarios), another "
                "--test-fraction, or data with both labels in more scenarios"
            )
    return train, test


class ProbeFitter:
    """Makes and fits the probe of one hook on the training rows; records the chosen C."""

    def __init__(
        self,
        config: ProbeConfig,
        model: LoadedModel,
        acts: ActivationSet,
        y: Tensor,
        train: Tensor,
        groups: Sequence[str],
        max_in_memory_bytes: int = MAX_IN_MEMORY_BYTES,
    ) -> None:
        self.config, self.model, self.acts = config, model, acts
        self.y, self.train, self.groups = y, train, groups
        self.max_in_memory_bytes = max_in_memory_bytes
        self.chosen_c: dict[str, float] = {}

    def streams(self, hook: str) -> bool:
        """Whether ``hook`` is fitted streaming from the cache: its in-memory fit
        (:func:`in_memory_bytes`) would pass the budget."""
        select = self.config.probe == "logistic" and self.config.c is None
        need = in_memory_bytes(len(self.acts), len(self.train), self.acts.d_model, select)
        return need > self.max_in_memory_bytes

    def new_probe(self, hook: str) -> Probe:
        """An unfitted probe for ``hook`` (logistic C chosen by group cross-validation over
        the training scenarios only, unless the config gives it)."""
        config = self.config
        settings: dict[str, Any] = {}
        if config.probe == "logistic":
            settings["c"] = self.chosen_c[hook] = (
                config.c if config.c is not None else self.chosen_c[hook]
            )
        meta = ProbeMeta(self.model.name, self.model.fingerprint, hook, config.tokens)
        meta.extra[MODEL_DTYPE] = self.model.dtype_name
        return make_probe(config.probe, meta=meta, **settings)

    def select_c(self, hooks: Sequence[str]) -> dict[str, float]:
        """C of every hook's logistic probe by group cross-validation over the training
        scenarios, all hooks x folds x grid in one batched solve (:func:`select_c_many`);
        a hook that :meth:`streams` by :func:`select_c_streaming` over the same folds."""
        device = self.model.device
        train_groups = [self.groups[i] for i in self.train.tolist()]
        n_folds = min(4, len(set(train_groups)))
        chosen: dict[str, float] = {}
        in_memory = [h for h in hooks if not self.streams(h)]
        if in_memory:
            batched = select_c_many(
                {h: self.acts[h][self.train].to(device) for h in in_memory},
                self.y[self.train].to(device),
                train_groups,
                n_folds=n_folds,
                seed=self.config.seed,
            )
            chosen.update({h: best for h, (best, _) in batched.items()})
        for h in hooks:
            if h not in chosen:
                read = partial(self.acts.blocks, h)
                chosen[h], _ = select_c_streaming(
                    read,
                    self.y,
                    self.train,
                    train_groups,
                    n_folds=n_folds,
                    seed=self.config.seed,
                    device=device,
                )
        return {h: chosen[h] for h in hooks}

    def fit(self, hooks: Sequence[str]) -> dict[str, Probe]:
        device = self.model.device
        todo = [h for h in hooks if h not in self.chosen_c]
        if self.config.probe == "logistic" and self.config.c is None and todo:
            self.chosen_c.update(self.select_c(todo))
        features = {h: self.acts[h].to(device) for h in hooks if not self.streams(h)}
        # The final probes: LogisticProbe itself (one fit per layer), so the run's probes are
        # bit-for-bit those of the per-layer path; the batched solver's optimum differs in the
        # 6th digit (tighter stopping rule), enough to move a printed third decimal.
        fitted = fit_per_layer(features, self.y.to(device), self.train.to(device), self.new_probe)
        for h in hooks:
            if h not in fitted:  # the same Newton iterations, streamed from the cache
                read = partial(self.acts.blocks, h)
                fitted[h] = fit_streaming(self.new_probe(h), read, self.y, self.train, device)
        return {h: fitted[h] for h in hooks}


def scores_of(
    probe: Probe, hook: str, acts: ActivationSet, rows: Tensor, budget: int = MAX_IN_MEMORY_BYTES
) -> Tensor:
    """The probe's scores of ``rows`` of ``acts`` (on the probe's device, returned on CPU);
    read block by block from the cache when ``acts[hook]`` would pass ``budget`` bytes."""
    device = probe.direction.device
    if acts.nbytes(hook) <= budget:
        return probe.score(acts[hook][rows].to(device)).cpu()
    return acts.map_rows(hook, rows, lambda X: probe.score(X.to(device)).cpu())


def random_control(s: Scored, hook: str, config: ProbeConfig) -> tuple[float, float]:
    """The random-direction control on the held-out rows (streamed past the budget)."""
    if s.acts.nbytes(hook) <= s.budget:
        return random_direction_aurocs(
            s.acts[hook][s.test], s.y[s.test], config.n_random, config.seed
        )
    directions = random_directions(s.acts.d_model, config.n_random, config.seed)
    projected = s.acts.map_rows(hook, s.test, lambda X: X.cpu() @ directions)
    return direction_aurocs(projected.T, s.y[s.test])


@dataclass
class Scored:
    """What each layer is evaluated on: training acts and split, and the extra sets."""

    data: Datasets
    acts: ActivationSet
    y: Tensor
    train: Tensor
    test: Tensor
    control_acts: ActivationSet | None
    eval_acts: ActivationSet | None
    budget: int = MAX_IN_MEMORY_BYTES  # bytes of one hook's vectors read in memory

    @property
    def test_transcripts(self) -> list[Transcript]:
        return [self.data.train[i] for i in self.test.tolist()]


def evaluate_layer(
    layer: int, hook: str, probe: Probe, s: Scored, config: ProbeConfig, c: float | None
) -> LayerResult:
    """Held-out metrics of one layer's probe with its random-direction control, its recall at
    the control set's 1%-FPR threshold and its eval-set metrics."""
    test_scores = scores_of(probe, hook, s.acts, s.test, s.budget)
    rand_mean, rand_p95 = random_control(s, hook, config)
    result = LayerResult(
        layer=layer,
        hook=hook,
        c=c,
        train_auroc=auroc(s.y[s.train], scores_of(probe, hook, s.acts, s.train, s.budget)),
        test=report_set(
            test_scores, s.test_transcripts, s.acts, s.test, probe.threshold, config.seed
        ),
        random_auroc_mean=rand_mean,
        random_auroc_p95=rand_p95,
    )
    if s.control_acts is not None:
        all_rows = torch.arange(len(s.data.control))
        control_scores = scores_of(probe, hook, s.control_acts, all_rows, s.budget)
        threshold = threshold_at_fpr(control_scores, 0.01)
        probe.meta.extra["threshold_1pct_fpr_on_control"] = threshold
        y_test = s.y[s.test]
        positives, negatives = test_scores[y_test == 1], test_scores[y_test == 0]
        result.control_recall = float((positives > threshold).float().mean())
        result.control_flagged_consistent = float((negatives > threshold).float().mean())
    if s.eval_acts is not None:
        rows = torch.arange(len(s.data.eval))
        result.eval = report_set(
            scores_of(probe, hook, s.eval_acts, rows, s.budget),
            s.data.eval,
            s.eval_acts,
            rows,
            probe.threshold,
            config.seed,
        )
    return result


#: The config fields that change a run's probes or numbers. A run folder is named by them
#: (non-default values add a suffix) and an existing folder made with other values of them is
#: not overwritten. The other fields change where and how it runs (device, batch_size, out,
#: json, cache_dir, progress) or add a section beside the main results (eval_dataset,
#: control_dataset): rerunning with other values of those replaces the folder's contents.
#: The dtype the model ran in (``--dtype`` as resolved: ``auto`` is bfloat16 on a GPU) is
#: compared too, by :func:`check_run_folder`, from the loaded model; the device is not (on
#: one dtype it moves results only in the last float digits).
RUN_IDENTITY = (
    "model",
    "dataset",
    "layers",
    "site",
    "tokens",
    "probe",
    "c",
    "test_fraction",
    "seed",
    "max_scenarios",
    "max_tokens",
    "n_random",
    "erase_stances",
)

#: Suffix part of each identity field that the folder name does not already show.
_SUFFIX = {
    "seed": "seed{}",
    "max_scenarios": "max{}",
    "c": "c{:g}",
    "test_fraction": "test{:g}",
    "max_tokens": "tok{}",
    "n_random": "rand{}",
    "dtype": "{}",
    "erase_stances": "erased",
}


def run_suffix(config: ProbeConfig, model_dtype: str | None = None) -> str:
    """``""`` for the default settings, else e.g. ``-seed3-max4-c0.1-test0.3``: one part per
    result-changing setting that differs from its default. ``--dtype auto`` that resolved to
    another dtype than float32 (``model_dtype``: bfloat16 on a GPU) adds that dtype, so a GPU
    run's default folder is not a CPU run's."""
    defaults = {f.name: f.default for f in fields(ProbeConfig)}
    suffix = "".join(
        "-" + part.format(getattr(config, name))
        for name, part in _SUFFIX.items()
        if getattr(config, name) != defaults[name]
    )
    if config.dtype == "auto" and model_dtype not in (None, "float32"):
        suffix += f"-{model_dtype}"
    return suffix


def default_out_dir(
    config: ProbeConfig, model_name: str, root: Path, model_dtype: str | None = None
) -> Path:
    """``<root>/runs/<model>/<data>-<site>-<tokens>-<probe>-L<layers><suffix>``: the default
    settings keep the suffix-free name; see :func:`run_suffix`."""
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
    name = f"{data_slug}-{config.site}-{config.tokens}-{config.probe}-{layers}"
    return root / "runs" / model_slug / (name + run_suffix(config, model_dtype))


def check_out_file(config: ProbeConfig) -> None:
    """``--out`` must be a folder (or not exist yet): checked before any work."""
    if config.out and Path(config.out).exists() and not Path(config.out).is_dir():
        raise ConfigError(
            f"--out {config.out} is a file, not a folder; pass a folder path for the run"
        )


def _saved_dtype(out: Path, saved: dict[str, Any]) -> str | None:
    """The dtype a saved run's model ran in: ``config.json``'s ``model_dtype``, else (runs
    saved before it was recorded there) ``metrics.json``'s ``model.dtype``, else None."""
    if isinstance(saved.get(MODEL_DTYPE), str):
        return saved[MODEL_DTYPE]
    try:
        return json.loads((out / "metrics.json").read_text(encoding="utf-8"))["model"]["dtype"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_run_folder(out: Path, config: ProbeConfig, model_dtype: str | None = None) -> None:
    """Refuse to overwrite a run folder whose ``config.json`` differs from ``config`` in a
    result-changing field (:data:`RUN_IDENTITY`) or, given ``model_dtype`` (the dtype the
    model resolved to: ``--dtype auto`` is bfloat16 on a GPU), in the dtype its model ran in
    (a run whose dtype is not recorded is not compared on it)."""
    saved_file = out / "config.json"
    if not saved_file.is_file():
        return
    try:
        whole = json.loads(saved_file.read_text(encoding="utf-8"))
        saved = whole["config"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{saved_file} is not a run's config.json; pass --out DIR for a new folder, or "
            f"delete {out}"
        ) from None
    wanted = json.loads(json.dumps(config.to_dict()))
    # A field absent from a saved config is younger than the run: it ran with the default.
    defaults = json.loads(json.dumps(ProbeConfig().to_dict()))
    found = {k: saved.get(k, defaults[k]) for k in RUN_IDENTITY}
    asked = {k: wanted[k] for k in RUN_IDENTITY}
    saved_dtype = _saved_dtype(out, whole)
    if model_dtype is not None and saved_dtype is not None:
        found[MODEL_DTYPE], asked[MODEL_DTYPE] = saved_dtype, model_dtype
    check_same(
        found,
        asked,
        where=f"run folder {out}",
        fix=f"pass --out DIR to keep both runs, or delete {out} to replace it",
        error=ConfigError,
    )


@dataclass
class Fitted:
    """One pass of fits and evaluations over every hook (:func:`fit_and_evaluate`)."""

    layer0: SetReport
    layer0_c: float | None
    layers: list[LayerResult]
    probes: dict[int, Probe]


def fit_and_evaluate(
    config: ProbeConfig, model: LoadedModel, s: Scored, hooks: Sequence[str]
) -> Fitted:
    """Fit the layer-0 control and one probe per hook on the training rows of ``s.acts``,
    and evaluate each on the held-out rows beside its controls and on the extra sets."""
    groups = [t.group for t in s.data.train]
    fitter = ProbeFitter(config, model, s.acts, s.y, s.train, groups, max_in_memory_bytes=s.budget)
    fitted = fitter.fit([CONTROL_HOOK, *hooks])  # every C chosen in one batched solve
    layer0_probe = fitted[CONTROL_HOOK]
    layer0 = report_set(
        scores_of(layer0_probe, CONTROL_HOOK, s.acts, s.test, s.budget),
        s.test_transcripts,
        s.acts,
        s.test,
        layer0_probe.threshold,
        config.seed,
    )
    probes = {layer: fitted[hook] for layer, hook in zip(config.layers, hooks, strict=True)}
    results = [
        evaluate_layer(layer, hook, probes[layer], s, config, fitter.chosen_c.get(hook))
        for layer, hook in zip(config.layers, hooks, strict=True)
    ]
    return Fitted(layer0, fitter.chosen_c.get(CONTROL_HOOK), results, probes)


def check_erasable(config: ProbeConfig, data: Datasets) -> None:
    """With ``erase_stances``: refuse, before the model loads, training rows that cannot fit a
    stance eraser (a stance missing, or of one value only)."""
    if not config.erase_stances:
        return
    try:
        training_stances([data.train[i] for i in data.train_rows.tolist()])
    except ErasureError as err:
        raise ErasureError(
            f"{config.dataset}: --erase-stances cannot fit its stance erasers: {err}"
        ) from None


def erased_sets(
    s: Scored, hooks: Sequence[str], device: torch.device
) -> tuple[Scored, dict[str, Any]]:
    """``s`` with every activation set (training, control, eval) read through one stance
    eraser per hook (the layer-0 control's included), each fitted on the training rows only
    (:func:`interp.probe.erasure.fit_stance_erasers`, streamed from the cache); the erasers."""
    erasers = fit_stance_erasers(s.acts, [CONTROL_HOOK, *hooks], s.data.train, s.train, device)
    for acts in (s.acts, s.control_acts, s.eval_acts):
        if acts is not None:
            acts.release()  # the un-erased matrices are not read again

    def view(acts: ActivationSet | None) -> ActivationSet | None:
        return None if acts is None else erased_view(acts, erasers)

    erased = replace(
        s,
        acts=erased_view(s.acts, erasers),
        control_acts=view(s.control_acts),
        eval_acts=view(s.eval_acts),
    )
    return erased, erasers


def train_probe(config: ProbeConfig, model: LoadedModel | None = None) -> ProbeRun:
    """Run the pipeline for ``config``; pass ``model`` to reuse a loaded one. Writes the
    probes, metrics, resolved config and figure (see :mod:`interp.probe.report`).

    With ``erase_stances`` the probes are fitted twice: on the activations as cached (kept as
    the run's ``before_erasure``) and after stance erasure (the run's results and probes;
    each saved probe keeps its eraser)."""
    from interp.probe.report import save_run

    root = Path(config.cache_dir) if config.cache_dir else cache_root()
    check_out_file(config)
    data = read_datasets(config)
    check_erasable(config, data)
    # only the blocks up to the deepest probed layer are loaded
    model = model or load_model(config.model, **model_options(config), max_layer=max(config.layers))
    dtype = model.dtype_name
    out_dir = Path(config.out) if config.out else default_out_dir(config, model.name, root, dtype)
    check_run_folder(out_dir, config, dtype)
    for layer in config.layers:
        model.check_layer(layer)
    # One writer per run folder: a second run on it waits here, then finds this run's
    # config.json and is refused (other settings) or rewrites the same results.
    with folder_lock(out_dir):
        check_run_folder(out_dir, config, dtype)
        run = fit_run(config, model, data, root)
        run.out_dir = out_dir
        save_run(run)
    return run


def fit_run(config: ProbeConfig, model: LoadedModel, data: Datasets, root: Path) -> ProbeRun:
    """Cache the activations, fit and evaluate every layer's probe (twice with
    ``erase_stances``): the run :func:`train_probe` saves."""
    hooks = [hook_name(layer, config.site) for layer in config.layers]
    request = CacheRequest(
        tokens=config.tokens,
        batch_size=config.batch_size,
        max_tokens=config.max_tokens,
        cache_dir=root / "activations",
        progress=config.progress,
    )
    acts = cache_activations(model, data.train, [*hooks, CONTROL_HOOK], request=request)
    s = Scored(
        data,
        acts,
        torch.tensor([t.label for t in data.train]),
        data.train_rows,
        data.test_rows,
        control_acts=(
            cache_activations(model, data.control, hooks, request=request) if data.control else None
        ),
        eval_acts=(
            cache_activations(model, data.eval, hooks, request=request) if data.eval else None
        ),
        budget=MAX_IN_MEMORY_BYTES,  # read at call time, so a caller (or test) can lower it
    )
    fitted, before = fit_and_evaluate(config, model, s, hooks), None
    if config.erase_stances:
        before = BeforeErasure(fitted.layer0, fitted.layer0_c, fitted.layers)
        s, erasers = erased_sets(s, hooks, model.device)
        fitted = fit_and_evaluate(config, model, s, hooks)
        fitted.probes = {
            layer: ErasedProbe(probe, erasers[hook_name(layer, config.site)])
            for layer, probe in fitted.probes.items()
        }
    return make_run(config, model, s, fitted, before)


def make_run(
    config: ProbeConfig, model: LoadedModel, s: Scored, fitted: Fitted, before: BeforeErasure | None
) -> ProbeRun:
    """The :class:`ProbeRun` of a finished pipeline (not yet saved)."""
    groups = [t.group for t in s.data.train]
    return ProbeRun(
        config=config,
        model_name=model.name,
        model_fingerprint=model.fingerprint,
        n_layers=model.checkpoint_layers or model.n_layers,
        model_dtype=model.dtype_name,
        dataset_hash=dataset_hash(s.data.train),
        n_transcripts=len(s.data.train),
        n_answer_missing=int((~s.acts.answer_found).sum()),
        n_empty=sum(not t.reply.strip() for t in s.data.train),
        n_truncated=int(s.acts.truncated.sum()),
        train_groups=sorted({groups[i] for i in s.train.tolist()}),
        test_groups=sorted({groups[i] for i in s.test.tolist()}),
        layer0=fitted.layer0,
        layer0_c=fitted.layer0_c,
        layers=fitted.layers,
        probes=fitted.probes,
        before_erasure=before,
    )
