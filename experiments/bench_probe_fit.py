"""Benchmark: a probe on every layer with C chosen by group cross-validation, ours vs
scikit-learn, both doing the same work.

What is measured: the wall-clock time (``time.perf_counter``) of the whole per-layer sweep
that ``python -m interp.probe --layers ...`` runs: for every layer, choose C from the grid
``probes.select.C_GRID`` (0.001 ... 10) by 4-fold group cross-validation over the training
scenarios (folds from ``probes.select.group_folds``, mean validation AUROC, ties to the
smaller C), then fit the final probe on all training rows at the chosen C. Alongside the wall
time, each sweep's CPU seconds (``time.process_time``; both methods run on this process's
threads), which other processes on a shared machine disturb less than the wall time.

- ours: ``probes.select_c_many`` then ``probes.fit_per_layer(..., batched=True)``: every
  layer x fold x C in one batched float64 Newton solve in the dual (kernel) form, the C grid
  walked as a warm-started path (``probes.batched``), on ``--device``;
- scikit-learn: per layer, per fold, per C: ``StandardScaler`` on the fold's training rows,
  ``LogisticRegression(C, solver="lbfgs", max_iter=--sk-max-iter, tol=--sk-tol)``, AUROC on
  the fold; then the final fit at its chosen C; on the CPU, its BLAS threads limited to
  ``--threads`` (threadpoolctl) like torch's. Same folds, grid and tie rule.

Shapes: by default the pooled activations of all 30 layers of the default model (768
transcripts of builtin:consistency x 576, read from ``<cache>/activations``; a complete cache
holding a superset of the hooks is reused). ``--synthetic``: Gaussian features of the same
shape with a planted label direction (real labels and scenarios). ``--large``: synthetic
features of ``--large-layers`` (80) x ``--large-rows`` (4,000, scenarios of 8 rows) x
``--large-dim`` (4,096), about 5 GB in float32, generated per layer from ``seed`` and the
layer index; only the first ``--measure-layers`` layers are generated and timed (both
methods) and scikit-learn only on the first ``--sk-layers`` of those; each total is
extrapolated linearly to all layers (layers are independent problems; on a CPU batching
across layers saves no arithmetic). The report says which figures are extrapolated.

Split: ``probes.group_split`` by scenario (``--test-fraction`` 0.25, ``--seed`` 0). One
warm-up of each method runs on one layer first; then both run ``--repeats`` times,
alternating, and the median total is kept.

Reading the output: a row per layer: seconds of each (per-layer share of ours: total / layers),
the C each chose, held-out AUROC of both final probes and their difference, the cosine
between their directions. Then totals and ``RATIO sklearn/ours`` (> 1: ours is faster).
The CPU ratio is the same ratio in CPU seconds, with the load average at the end. Targets:
ratio >= 5, same C on every layer, |AUROC difference| <= 0.005.

Run: ``python experiments/bench_probe_fit.py --synthetic --threads 1``; ``... --large
--measure-layers 2 --sk-layers 1 --repeats 1``. On a shared CPU use ``--threads 1``: MKL's
multi-threaded factorisations slow down many-fold when the cores are oversubscribed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.benchmarks import sync, write_result
from interp.cache import CacheKey, cache_activations, load_activation_set
from interp.cli import run_cli
from interp.config import ConfigError
from interp.data.datasets import build_consistency
from interp.data.transcripts import dataset_hash
from interp.hooks import hook_name
from interp.models import DEFAULT_MODEL
from interp.models.placement import resolve_device
from interp.paths import cache_root

# Submodules, not the package: an editable install made before probes/__init__.py existed
# maps ``probes`` to a namespace package when the script's folder, not the repo, is on path.
from probes.batched import select_c_many
from probes.logistic import LogisticProbe
from probes.metrics import auroc
from probes.select import C_GRID, group_folds
from probes.split import group_split
from probes.sweep import fit_per_layer


@dataclass
class ProbeFitConfig:
    """Time a per-layer probe sweep with C by cross-validation: batched solver vs
    scikit-learn."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec, as for load_model"})
    synthetic: bool = field(
        default=False,
        metadata={"help": "random Gaussian features [768, 576] x 30 with a planted direction"},
    )
    large: bool = field(
        default=False,
        metadata={"help": "synthetic features [large-rows, large-dim] x large-layers"},
    )
    repeats: int = field(default=3, metadata={"help": "timed sweeps per method (median)"})
    device: str = field(
        default="auto", metadata={"help": "device of our probe: auto, cpu, cuda, mps"}
    )
    threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads", "default_text": "torch's choice"}
    )
    test_fraction: float = field(default=0.25, metadata={"help": "held-out share of scenarios"})
    seed: int = field(default=0, metadata={"help": "split seed (and synthetic data seed)"})
    sk_max_iter: int = field(default=10_000, metadata={"help": "scikit-learn max_iter"})
    sk_tol: float = field(default=1e-4, metadata={"help": "scikit-learn tol (its default: 1e-4)"})
    tokens: str = field(
        default="answer",
        metadata={"help": "token selection", "choices": ("answer", "reply", "last")},
    )
    batch_size: int = field(default=16, metadata={"help": "for building the cache"})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "activation cache folder", "default_text": "<cache>/activations"},
    )
    synthetic_layers: int = field(default=30, metadata={"help": "--synthetic: feature sets"})
    synthetic_dim: int = field(default=576, metadata={"help": "--synthetic: features per set"})
    large_layers: int = field(default=80, metadata={"help": "--large: layers"})
    large_rows: int = field(default=4000, metadata={"help": "--large: rows"})
    large_dim: int = field(default=4096, metadata={"help": "--large: features"})
    measure_layers: int | None = field(
        default=None,
        metadata={"help": "--large: layers generated and timed", "default_text": "all"},
    )
    sk_layers: int | None = field(
        default=None,
        metadata={"help": "layers scikit-learn is timed on (extrapolated)", "default_text": "all"},
    )
    out: str | None = field(
        default=None,
        metadata={
            "help": "JSON results",
            "default_text": "<cache>/benchmarks/probe_fit[_synthetic|_large].json",
        },
    )

    def __post_init__(self) -> None:
        for name in ("repeats", "synthetic_layers", "synthetic_dim", "large_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("measure_layers", "sk_layers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")


# --- features --------------------------------------------------------------------------------


def synthetic_layer(
    y: Tensor, group_index: Tensor, layer: int, n_layers: int, dim: int, seed: int
) -> Tensor:
    """One layer of Gaussian features shaped like pooled activations (its own generator,
    seeded by ``seed`` and ``layer``): a shared low-rank part (correlated features, as in a
    residual stream), a per-scenario offset, per-feature scales, and a planted label
    direction whose strength rises and falls over the layers (AUROC ~0.5 to ~0.9)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + layer)
    n, d, rank = len(y), dim, 16
    sign = (2 * y.float() - 1)[:, None]
    loadings = 2.0 * torch.randn(rank, d, generator=gen)
    shared = torch.randn(n, rank, generator=gen) @ loadings
    offsets = 0.5 * torch.randn(int(group_index.max()) + 1, d, generator=gen)[group_index]
    direction = torch.randn(d, generator=gen)
    direction /= direction.norm()
    strength = 1.5 * math.sin(math.pi * layer / max(1, n_layers - 1))
    noise = torch.randn(n, d, generator=gen)
    scales = torch.exp(torch.randn(d, generator=gen))  # anisotropic
    return (noise + shared + offsets + strength * sign * direction) * scales


def synthetic_features(
    y: Tensor,
    groups: list[str],
    seed: int,
    n_layers: int = 30,
    dim: int = 576,
    layers: Sequence[int] | None = None,
) -> dict[str, Tensor]:
    """``synthetic_layer`` for ``layers`` (default: all ``n_layers``)."""
    names = sorted(set(groups))
    lookup = {g: k for k, g in enumerate(names)}
    group_index = torch.tensor([lookup[g] for g in groups])
    return {
        f"synthetic.{layer}": synthetic_layer(y, group_index, layer, n_layers, dim, seed)
        for layer in (range(n_layers) if layers is None else layers)
    }


def spread(count: int, total: int) -> list[int]:
    """``count`` layer indices spread evenly over ``0 .. total - 1`` (the middles of
    ``count`` equal bins, so one layer is the middle one, where the planted signal peaks)."""
    if count >= total:
        return list(range(total))
    return sorted({int((k + 0.5) * total / count) for k in range(count)})


def find_superset_cache(folder: Path, key: CacheKey) -> Path | None:
    """A complete cache of the same inputs whose hooks include ``key.hooks``."""
    if not folder.is_dir():
        return None
    want = set(key.hooks)
    for manifest in sorted(folder.glob("*/manifest.json")):
        try:
            data = json.loads(manifest.read_text())
            other = CacheKey.from_json(data["key"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (
            data.get("status") == "complete"
            and want <= set(other.hooks)
            and dataclasses.replace(other, hooks=key.hooks) == key
        ):
            return manifest.parent
    return None


def real_features(config: ProbeFitConfig, transcripts: list[Any]) -> dict[str, Tensor]:
    from interp.models import load_model

    model = load_model(config.model, device=config.device)
    hooks = tuple(hook_name(layer) for layer in range(model.n_layers))
    folder = Path(config.cache_dir) if config.cache_dir else cache_root() / "activations"
    key = CacheKey(
        model_name=model.name,
        model_fingerprint=model.fingerprint,
        dataset_hash=dataset_hash(transcripts),
        n_transcripts=len(transcripts),
        hooks=tuple(sorted(hooks)),
        tokens=config.tokens,
        max_tokens=1024,
        per_token=False,
        dtype="float32",
    )
    found = find_superset_cache(folder, key)
    if found is not None:
        print(f"Reading cached activations from {found}", flush=True)
        acts = load_activation_set(found)
    else:
        manifest = folder / key.digest() / "manifest.json"
        if manifest.is_file():
            print(
                f"note: {manifest.parent} is incomplete; if another process is filling it, "
                "stop this one and wait for it (this run would compute the same shards)",
                file=sys.stderr,
            )
        print(
            f"Caching {len(hooks)} hooks of {model.name} for {len(transcripts)} transcripts "
            "(once; ~6-8 minutes on a 2-core CPU for the default model)...",
            flush=True,
        )
        acts = cache_activations(
            model,
            transcripts,
            hooks,
            config.tokens,
            batch_size=config.batch_size,
            cache_dir=folder,
        )
    return {h: acts[h] for h in hooks}


# --- the two fitters -------------------------------------------------------------------------


# --- the two sweeps --------------------------------------------------------------------------


@dataclass
class Problem:
    """What both methods get: each layer's training and held-out rows, labels, the training
    rows' scenarios; numpy copies for scikit-learn (made outside the timed region)."""

    train_x: dict[str, Tensor]
    test_x: dict[str, Tensor]
    y_train: Tensor
    y_test: Tensor
    train_groups: list[str]
    sk_train: dict[str, np.ndarray] = field(default_factory=dict)
    sk_test: dict[str, np.ndarray] = field(default_factory=dict)


def sweep_ours(p: Problem, device: torch.device) -> tuple[dict[str, Any], float, float]:
    """C by cross-validation for every layer at once, then the final probes at once; the
    result, wall-clock seconds and this process's CPU seconds."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    chosen = select_c_many(p.train_x, p.y_train, p.train_groups)
    c_of = {name: best for name, (best, _) in chosen.items()}
    everything = torch.arange(len(p.y_train), device=p.y_train.device)
    probes = fit_per_layer(
        p.train_x, p.y_train, everything, lambda n: LogisticProbe(c=c_of[n]), batched=True
    )
    sync(device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {n: (c_of[n], probes[n]) for n in p.train_x}, wall, cpu


def sklearn_layer(X: np.ndarray, y: np.ndarray, groups: list[str], config: ProbeFitConfig):
    """``select_c`` then the final fit, with scikit-learn: same folds, grid and tie rule."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def fit(rows: np.ndarray, c: float):
        scaler = StandardScaler().fit(X[rows])
        clf = LogisticRegression(
            C=c, solver="lbfgs", max_iter=config.sk_max_iter, tol=config.sk_tol
        )
        return scaler, clf.fit(scaler.transform(X[rows]), y[rows])

    everything = np.arange(len(y))
    results = {}
    for c in sorted(C_GRID):
        values = []
        for fold in group_folds(groups, 4, 0):
            fold = fold.numpy()
            train = np.setdiff1d(everything, fold)
            if len(set(y[fold])) < 2 or len(set(y[train])) < 2:
                continue
            scaler, clf = fit(train, c)
            scores = clf.decision_function(scaler.transform(X[fold]))
            values.append(auroc(torch.from_numpy(y[fold]), torch.from_numpy(scores)))
        results[c] = statistics.fmean(values)
    best = max(results, key=lambda c: (results[c], -c))
    return best, fit(everything, best)


def sweep_sklearn(p: Problem, names: list[str], config) -> tuple[dict[str, Any], float, float]:
    """scikit-learn's sweep, its BLAS limited to ``--threads`` as torch is (threadpoolctl);
    the result, wall-clock seconds and CPU seconds."""
    from threadpoolctl import threadpool_limits

    y = p.y_train.cpu().numpy()
    with threadpool_limits(config.threads):
        start, cpu = time.perf_counter(), time.process_time()
        fitted = {n: sklearn_layer(p.sk_train[n], y, p.train_groups, config) for n in names}
        return fitted, time.perf_counter() - start, time.process_time() - cpu


def load_problem(config: ProbeFitConfig, device: torch.device) -> tuple[Problem, int, str]:
    """The problem, the number of layers it stands for, and a description of the features."""
    if config.large:
        n = config.large_rows
        y = torch.arange(n) % 2
        groups = [f"s{i // 8}" for i in range(n)]
        measured = spread(config.measure_layers or config.large_layers, config.large_layers)
        features = synthetic_features(
            y, groups, config.seed, config.large_layers, config.large_dim, measured
        )
        total, what = config.large_layers, f"synthetic large, layers {measured}"
    else:
        transcripts = build_consistency()
        y = torch.tensor([t.label for t in transcripts])
        groups = [t.group for t in transcripts]
        if config.synthetic:
            features = synthetic_features(
                y, groups, config.seed, config.synthetic_layers, config.synthetic_dim
            )
        else:
            features = real_features(config, transcripts)
        total, what = len(features), "synthetic" if config.synthetic else config.model
    train, test = group_split(groups, config.test_fraction, config.seed)
    problem = Problem(
        {k: v[train].float().to(device) for k, v in features.items()},
        {k: v[test].float().to(device) for k, v in features.items()},
        y[train].to(device),
        y[test],
        [groups[i] for i in train.tolist()],
    )
    del features
    return problem, total, what


def time_sweeps(config: ProbeFitConfig, p: Problem, device, sk_names: list[str]) -> dict:
    """Warm-up on one layer, then both sweeps ``repeats`` times, alternating."""
    first = next(iter(p.train_x))
    p.sk_train = {n: p.train_x[n].cpu().double().numpy() for n in sk_names}
    p.sk_test = {n: p.test_x[n].cpu().double().numpy() for n in sk_names}
    warm = Problem({first: p.train_x[first]}, {}, p.y_train, p.y_test, p.train_groups)
    sweep_ours(warm, device)
    totals: dict[str, list[float]] = {"ours": [], "sklearn": []}
    cpu: dict[str, list[float]] = {"ours": [], "sklearn": []}
    out: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for r in range(config.repeats):
            for method in ("ours", "sklearn") if r % 2 == 0 else ("sklearn", "ours"):
                if method == "ours":
                    out["ours"], dt, dc = sweep_ours(p, device)
                else:
                    out["sklearn"], dt, dc = sweep_sklearn(p, sk_names, config)
                totals[method].append(dt)
                cpu[method].append(dc)
            print(
                f"  repeat {r + 1}/{config.repeats}: ours {totals['ours'][-1]:.2f}s "
                f"({len(p.train_x)} layers), sklearn {totals['sklearn'][-1]:.2f}s "
                f"({len(sk_names)} layers)",
                flush=True,
            )
    out["totals"], out["cpu_totals"] = totals, cpu
    out["warnings"] = sorted({str(w.message).splitlines()[0] for w in caught})
    return out


def score_rows(p: Problem, timed: dict, sk_names: list[str]) -> list[dict[str, Any]]:
    """Per layer scikit-learn ran on: both chosen C, held-out AUROC, direction cosine."""
    rows = []
    for n in sk_names:
        c_ours, probe = timed["ours"][n]
        c_sk, (scaler, clf) = timed["sklearn"][n]
        a_ours = auroc(p.y_test, probe.score(p.test_x[n]).cpu())
        sk_scores = clf.decision_function(scaler.transform(p.sk_test[n]))
        a_sk = auroc(p.y_test, torch.from_numpy(sk_scores))
        d_sk = torch.from_numpy(clf.coef_[0] / scaler.scale_).float()
        rows.append(
            {
                "features": n,
                "c_ours": c_ours,
                "c_sklearn": c_sk,
                "auroc_ours": a_ours,
                "auroc_sklearn": a_sk,
                "abs_auroc_diff": abs(a_ours - a_sk),
                "direction_cosine": float(torch.dot(probe.direction.cpu(), d_sk / d_sk.norm())),
            }
        )
    return rows


def report(what: str, device, rows: list[dict], summary: dict, caught: list) -> str:
    med, ext = summary["median_total_s"], summary["extrapolated_total_s"]
    width = max(len("features"), *(len(r["features"]) for r in rows))
    header = (
        f"{'features':<{width}} {'C ours':>7} {'C sk':>7} {'AUROC ours':>10} {'AUROC sk':>9} "
        f"{'|diff|':>7} {'cos':>7}"
    )
    lines = [
        "",
        f"{what}: ours on {device} ({torch.get_num_threads()} threads), scikit-learn on CPU",
        header,
        "-" * len(header),
    ]
    lines += [
        f"{r['features']:<{width}} {r['c_ours']:>7g} {r['c_sklearn']:>7g} "
        f"{r['auroc_ours']:>10.4f} {r['auroc_sklearn']:>9.4f} {r['abs_auroc_diff']:>7.4f} "
        f"{r['direction_cosine']:>7.4f}"
        for r in rows
    ]
    lines += [
        "-" * len(header),
        f"measured (median): ours {med['ours']:.2f} s on {summary['layers_ours']} layers, "
        f"scikit-learn {med['sklearn']:.2f} s on {summary['layers_sklearn']} layers",
        f"total for {summary['layers_total']} layers (linear extrapolation where fewer were "
        f"measured): ours {ext['ours']:.1f} s, scikit-learn {ext['sklearn']:.1f} s",
        f"same C on every compared layer: {summary['same_c']}; "
        f"max |AUROC ours - AUROC sklearn| = {summary['max_abs_auroc_diff']:.4f}",
    ]
    lines += [f"warning during fits: {w}" for w in caught]
    cpu = summary["median_cpu_s"]
    lines.append(
        f"CPU seconds of this process (median; less sensitive to other load than wall time): "
        f"ours {cpu['ours']:.2f} s, scikit-learn {cpu['sklearn']:.2f} s; "
        f"CPU ratio sklearn/ours (extrapolated) = {summary['cpu_ratio_sklearn_over_ours']:.2f}; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    lines.append(
        f"RATIO sklearn/ours = {summary['ratio_sklearn_over_ours']:.2f}  "
        "(total sweep wall time; > 1 means ours is faster)"
    )
    return "\n".join(lines)


def run(config: ProbeFitConfig) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    p, total, what = load_problem(config, device)
    names = list(p.train_x)
    sk_names = names[: config.sk_layers] if config.sk_layers else names
    first = names[0]
    print(
        f"{what}: {len(names)} of {total} layers, train {list(p.train_x[first].shape)}, "
        f"{len(p.y_test)} test rows; scikit-learn on {len(sk_names)} layers",
        flush=True,
    )
    timed = time_sweeps(config, p, device, sk_names)
    rows = score_rows(p, timed, sk_names)
    median = {m: statistics.median(v) for m, v in timed["totals"].items()}
    median_cpu = {m: statistics.median(v) for m, v in timed["cpu_totals"].items()}
    extrapolated = {
        "ours": median["ours"] * total / len(names),
        "sklearn": median["sklearn"] * total / len(sk_names),
    }
    summary = {
        "median_total_s": median,
        "extrapolated_total_s": extrapolated,
        "layers_total": total,
        "layers_ours": len(names),
        "layers_sklearn": len(sk_names),
        "ratio_sklearn_over_ours": extrapolated["sklearn"] / extrapolated["ours"],
        "median_cpu_s": median_cpu,
        "cpu_ratio_sklearn_over_ours": (median_cpu["sklearn"] / len(sk_names))
        / (median_cpu["ours"] / len(names)),
        "max_abs_auroc_diff": max(r["abs_auroc_diff"] for r in rows),
        "same_c": all(r["c_ours"] == r["c_sklearn"] for r in rows),
    }
    print(report(what, device, rows, summary, timed["warnings"]))
    import sklearn

    result = {
        "device": str(device),
        "n_train": len(p.y_train),
        "n_test": len(p.y_test),
        "shape": [len(p.y_train) + len(p.y_test), p.train_x[first].shape[1]],
        "totals_s": timed["totals"],
        "cpu_totals_s": timed["cpu_totals"],
        "load_average": list(os.getloadavg()),
        **summary,
        "warnings": timed["warnings"],
        "layers": rows,
    }
    name = (
        "probe_fit_large"
        if config.large
        else ("probe_fit_synthetic" if config.synthetic else "probe_fit")
    )
    out = write_result(name, config, result, config.out, versions={"sklearn": sklearn.__version__})
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(ProbeFitConfig, run, argv, prog="python experiments/bench_probe_fit.py")


if __name__ == "__main__":
    raise SystemExit(main())
