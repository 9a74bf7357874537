"""Benchmark: fitting one logistic probe per layer, ours vs scikit-learn.

What is measured: the wall-clock time (``time.perf_counter``) to fit one probe per layer on
every layer's pooled ``resid_post`` activations, with

- ours: ``probes.LogisticProbe(c=C)`` (torch L-BFGS on features standardised inside ``fit``),
  on ``--device``;
- scikit-learn: ``StandardScaler`` fitted on the training rows, then
  ``LogisticRegression(C=C, solver="lbfgs", max_iter=--sk-max-iter)`` (L2, bias unpenalised:
  the objective ``LogisticProbe`` documents), on the CPU. Its time includes the scaler's fit
  and transform, as ours includes the standardisation.

Both fit the same training rows: ``probes.group_split`` of builtin:consistency (768
transcripts) by scenario (``test_fraction=0.25``, ``seed=0``). One warm-up fit per method runs
first; then both sweeps run ``--repeats`` times, alternating, and the median total is kept.
Each probe is scored on the held-out scenarios: per-layer AUROC of both, their absolute
difference, and the cosine between the two probes' directions in activation space.

Features: by default the pooled activations of all 30 layers of the default model, read
with ``cache_activations`` (all 30 ``resid_post`` hooks, ``tokens=answer``) from
``<cache>/activations``; a complete cache of the same model and dataset that holds a superset
of those hooks (e.g. made by ``python -m interp.probe --layer 0-29``) is reused as is. Building
the cache once takes ~6-8 minutes on a 2-core CPU. ``--synthetic`` uses Gaussian data of the
same shape ([768, 576] x 30, anisotropic feature scales) with a planted label direction
whose strength varies over layers, with the real labels and scenario groups, to try the
script in seconds.

Target: ``RATIO sklearn/ours`` (median total fit time of scikit-learn over ours) of at least
~1 (ours no slower than the reference), with ``max |AUROC ours - AUROC sklearn|`` below
~0.01: both solve the same convex problem, so differences come only from the stopping rules
and from ``LogisticProbe`` standardising with the unbiased standard deviation where
``StandardScaler`` uses the biased one (a factor sqrt(n / (n - 1)) on every feature).

Reading the output: a row per layer (median fit seconds of each, held-out AUROC of each,
their difference, direction cosine, scikit-learn's L-BFGS iterations), then both totals and
the ratio. Compare ratios within one run only.

Run: ``python experiments/bench_probe_fit.py --synthetic`` (about a minute) or without
``--synthetic`` once the 30-layer cache exists (about 1-2 minutes).
"""

from __future__ import annotations

import dataclasses
import json
import math
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
from interp.models import DEFAULT_MODEL, resolve_device
from interp.paths import cache_root

# Submodules, not the package: an editable install made before probes/__init__.py existed
# maps ``probes`` to a namespace package when the script's folder, not the repo, is on path.
from probes.logistic import LogisticProbe
from probes.metrics import auroc
from probes.split import group_split


@dataclass
class ProbeFitConfig:
    """Time a per-layer logistic probe sweep: LogisticProbe vs scikit-learn."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec, as for load_model"})
    synthetic: bool = field(
        default=False,
        metadata={"help": "random Gaussian features [768, 576] x 30 with a planted direction"},
    )
    c: float = field(default=1.0, metadata={"help": "inverse L2 strength (scikit-learn's C)"})
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
    ours_tol: float | None = field(
        default=None,
        metadata={"help": "LogisticProbe tol", "default_text": "the probe's own, 1e-6"},
    )
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
    out: str | None = field(
        default=None,
        metadata={
            "help": "JSON results",
            "default_text": "<cache>/benchmarks/probe_fit[_synthetic].json",
        },
    )

    def __post_init__(self) -> None:
        if self.c <= 0:
            raise ConfigError("--c must be > 0")
        for name in ("repeats", "synthetic_layers", "synthetic_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")


# --- features --------------------------------------------------------------------------------


def synthetic_features(
    y: Tensor, groups: list[str], seed: int, n_layers: int = 30, dim: int = 576
) -> dict[str, Tensor]:
    """Gaussian features shaped like pooled activations: a shared low-rank part (correlated
    features, as in a residual stream), a per-scenario offset, per-feature scales, and one
    planted label direction per layer whose strength rises and falls over the layers
    (held-out AUROC from ~0.5 to ~0.9)."""
    gen = torch.Generator().manual_seed(seed)
    n, d, rank = len(y), dim, 16
    sign = (2 * y.float() - 1)[:, None]
    names = sorted(set(groups))
    group_index = torch.tensor([names.index(g) for g in groups])
    features = {}
    for layer in range(n_layers):
        loadings = 2.0 * torch.randn(rank, d, generator=gen)
        shared = torch.randn(n, rank, generator=gen) @ loadings
        offsets = 0.5 * torch.randn(len(names), d, generator=gen)[group_index]
        direction = torch.randn(d, generator=gen)
        direction /= direction.norm()
        strength = 1.5 * math.sin(math.pi * layer / max(1, n_layers - 1))
        noise = torch.randn(n, d, generator=gen)
        scales = torch.exp(torch.randn(d, generator=gen))  # anisotropic
        features[f"synthetic.{layer}"] = (
            noise + shared + offsets + strength * sign * direction
        ) * scales
    return features


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


def fit_ours(
    X: Tensor, y: Tensor, c: float, tol: float | None, device: torch.device
) -> tuple[LogisticProbe, float]:
    kwargs = {} if tol is None else {"tol": tol}
    sync(device)
    start = time.perf_counter()
    probe = LogisticProbe(c=c, **kwargs).fit(X, y)
    sync(device)
    return probe, time.perf_counter() - start


def fit_sklearn(
    X: np.ndarray, y: np.ndarray, c: float, max_iter: int, tol: float
) -> tuple[Any, Any, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    scaler = StandardScaler().fit(X)
    clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, tol=tol)
    clf.fit(scaler.transform(X), y)
    return scaler, clf, time.perf_counter() - start


def load_features(config: ProbeFitConfig, transcripts: list[Any]) -> dict[str, Tensor]:
    if not config.synthetic:
        return real_features(config, transcripts)
    y = torch.tensor([t.label for t in transcripts])
    shape = f"[{len(transcripts)}, {config.synthetic_dim}] x {config.synthetic_layers}"
    print(f"Synthetic features {shape} with a planted direction", flush=True)
    groups = [t.group for t in transcripts]
    return synthetic_features(y, groups, config.seed, config.synthetic_layers, config.synthetic_dim)


@dataclass
class Inputs:
    """Each feature set's rows, prepared outside the timed region: device tensors for ours,
    numpy arrays for scikit-learn."""

    ours_train: dict[str, Tensor]
    ours_test: dict[str, Tensor]
    sk_train: dict[str, np.ndarray]
    sk_test: dict[str, np.ndarray]
    y_train_dev: Tensor
    y_train_np: np.ndarray
    y_test: Tensor

    @classmethod
    def split(
        cls, features: dict[str, Tensor], y: Tensor, train: Any, test: Any, device: torch.device
    ) -> Inputs:
        return cls(
            {n: f[train].float().to(device) for n, f in features.items()},
            {n: f[test].float().to(device) for n, f in features.items()},
            {n: f[train].float().numpy() for n, f in features.items()},
            {n: f[test].float().numpy() for n, f in features.items()},
            y[train].to(device),
            y[train].numpy(),
            y[test],
        )


@dataclass
class Sweeps:
    """Per feature set: fit seconds of each repeat and the last fitted probes; per method: the
    sweep totals; scikit-learn's warnings."""

    ours_s: dict[str, list[float]] = field(default_factory=dict)
    sklearn_s: dict[str, list[float]] = field(default_factory=dict)
    totals: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "sklearn": []})
    ours_fit: dict[str, LogisticProbe] = field(default_factory=dict)
    sk_fit: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _sweep(config: ProbeFitConfig, inputs: Inputs, method: str, sweeps: Sweeps, device) -> None:
    total = 0.0
    for n in inputs.ours_train:
        if method == "ours":
            sweeps.ours_fit[n], dt = fit_ours(
                inputs.ours_train[n], inputs.y_train_dev, config.c, config.ours_tol, device
            )
            sweeps.ours_s.setdefault(n, []).append(dt)
        else:
            scaler, clf, dt = fit_sklearn(
                inputs.sk_train[n], inputs.y_train_np, config.c, config.sk_max_iter, config.sk_tol
            )
            sweeps.sk_fit[n] = (scaler, clf)
            sweeps.sklearn_s.setdefault(n, []).append(dt)
        total += dt
    sweeps.totals[method].append(total)


def time_sweeps(config: ProbeFitConfig, inputs: Inputs, device: torch.device) -> Sweeps:
    """Both sweeps ``repeats`` times, alternating which goes first."""
    sweeps = Sweeps()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for r in range(config.repeats):
            for method in ("ours", "sklearn") if r % 2 == 0 else ("sklearn", "ours"):
                _sweep(config, inputs, method, sweeps, device)
            print(
                f"  repeat {r + 1}/{config.repeats}: ours {sweeps.totals['ours'][-1]:.2f}s, "
                f"sklearn {sweeps.totals['sklearn'][-1]:.2f}s",
                flush=True,
            )
    sweeps.warnings = sorted({str(w.message).splitlines()[0] for w in caught})
    return sweeps


def score_rows(inputs: Inputs, sweeps: Sweeps) -> list[dict[str, Any]]:
    """Per feature set: median fit seconds, held-out AUROC of both, direction cosine."""
    rows = []
    for n in inputs.ours_train:
        probe = sweeps.ours_fit[n]
        scaler, clf = sweeps.sk_fit[n]
        a_ours = auroc(inputs.y_test, probe.score(inputs.ours_test[n]).cpu())
        sk_scores = clf.decision_function(scaler.transform(inputs.sk_test[n]))
        a_sk = auroc(inputs.y_test, torch.from_numpy(sk_scores))
        d_sk = torch.from_numpy(clf.coef_[0] / scaler.scale_).float()
        cosine = float(torch.dot(probe.direction.cpu(), d_sk / d_sk.norm()))
        rows.append(
            {
                "features": n,
                "ours_s": statistics.median(sweeps.ours_s[n]),
                "sklearn_s": statistics.median(sweeps.sklearn_s[n]),
                "auroc_ours": a_ours,
                "auroc_sklearn": a_sk,
                "abs_auroc_diff": abs(a_ours - a_sk),
                "direction_cosine": cosine,
                "sklearn_n_iter": int(clf.n_iter_[0]),
            }
        )
    return rows


def report(config: ProbeFitConfig, device, rows: list[dict], summary: dict, caught: list) -> str:
    """The table per feature set, the totals and the ratio."""
    median = summary["median_total_s"]
    width = max(len("features"), *(len(r["features"]) for r in rows))
    header = (
        f"{'features':<{width}} {'ours s':>7} {'sk s':>7} {'AUROC ours':>10} {'AUROC sk':>9} "
        f"{'|diff|':>7} {'cos':>6} {'sk iter':>7}"
    )
    lines = [
        "",
        f"{'synthetic' if config.synthetic else config.model} features, C={config.c}, ours on "
        f"{device} ({torch.get_num_threads()} threads), scikit-learn on CPU; "
        f"median of {config.repeats}",
        header,
        "-" * len(header),
    ]
    lines += [
        f"{r['features']:<{width}} {r['ours_s']:>7.3f} {r['sklearn_s']:>7.3f} "
        f"{r['auroc_ours']:>10.4f} {r['auroc_sklearn']:>9.4f} {r['abs_auroc_diff']:>7.4f} "
        f"{r['direction_cosine']:>6.3f} {r['sklearn_n_iter']:>7}"
        for r in rows
    ]
    lines += [
        "-" * len(header),
        f"total fit time (median): ours {median['ours']:.2f} s, "
        f"scikit-learn {median['sklearn']:.2f} s",
        f"max |AUROC ours - AUROC sklearn| = {summary['max_abs_auroc_diff']:.4f}",
    ]
    if summary["sklearn_not_converged"]:
        lines.append(f"warning: scikit-learn hit max_iter on {summary['sklearn_not_converged']}")
    lines += [f"warning during fits: {w}" for w in caught]
    lines.append(
        f"RATIO sklearn/ours = {summary['ratio_sklearn_over_ours']:.2f}  "
        "(total fit time; > 1 means ours is faster)"
    )
    return "\n".join(lines)


def run(config: ProbeFitConfig) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    transcripts = build_consistency()
    y = torch.tensor([t.label for t in transcripts])
    features = load_features(config, transcripts)
    train, test = group_split([t.group for t in transcripts], config.test_fraction, config.seed)
    inputs = Inputs.split(features, y, train, test, device)
    first = next(iter(features))
    print(
        f"{len(features)} feature sets of shape {list(features[first].shape)}, "
        f"{len(train)} train / {len(test)} test rows; warm-up...",
        flush=True,
    )
    fit_ours(inputs.ours_train[first], inputs.y_train_dev, config.c, config.ours_tol, device)
    fit_sklearn(
        inputs.sk_train[first], inputs.y_train_np, config.c, config.sk_max_iter, config.sk_tol
    )
    sweeps = time_sweeps(config, inputs, device)
    rows = score_rows(inputs, sweeps)
    median = {m: statistics.median(v) for m, v in sweeps.totals.items()}
    summary = {
        "median_total_s": median,
        "ratio_sklearn_over_ours": median["sklearn"] / median["ours"],
        "max_abs_auroc_diff": max(r["abs_auroc_diff"] for r in rows),
        "sklearn_not_converged": [
            r["features"] for r in rows if r["sklearn_n_iter"] >= config.sk_max_iter
        ],
    }
    print(report(config, device, rows, summary, sweeps.warnings))
    import sklearn

    result = {
        "device": str(device),
        "n_train": len(train),
        "n_test": len(test),
        "shape": list(features[first].shape),
        "totals_s": sweeps.totals,
        **summary,
        "warnings": sweeps.warnings,
        "layers": rows,
    }
    name = "probe_fit_synthetic" if config.synthetic else "probe_fit"
    out = write_result(name, config, result, config.out, versions={"sklearn": sklearn.__version__})
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(ProbeFitConfig, run, argv, prog="python experiments/bench_probe_fit.py")


if __name__ == "__main__":
    raise SystemExit(main())
