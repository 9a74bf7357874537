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

import argparse
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.artifacts import write_json_atomic
from interp.cache import CacheKey, cache_activations, load_activation_set
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

SYNTHETIC_LAYERS, SYNTHETIC_DIM = 30, 576


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time a per-layer logistic probe sweep: LogisticProbe vs scikit-learn."
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help="model spec, as for load_model")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="random Gaussian features [768, 576] x 30 with a planted direction (no model)",
    )
    p.add_argument("--c", type=float, default=1.0, help="inverse L2 strength (scikit-learn's C)")
    p.add_argument("--repeats", type=int, default=3, help="timed sweeps per method (median)")
    p.add_argument("--device", default="auto", help="device of our probe: auto, cpu, cuda, mps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0, help="split seed (and synthetic data seed)")
    p.add_argument("--sk-max-iter", type=int, default=10_000, help="scikit-learn max_iter")
    p.add_argument(
        "--sk-tol", type=float, default=1e-4, help="scikit-learn tol (its default: 1e-4)"
    )
    p.add_argument(
        "--ours-tol",
        type=float,
        default=None,
        help="LogisticProbe tol (default: the probe's own, 1e-6)",
    )
    p.add_argument("--tokens", default="answer", choices=("answer", "reply", "last"))
    p.add_argument("--batch-size", type=int, default=16, help="for building the cache")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="activation cache folder (default: <cache>/activations)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default: <cache>/benchmarks/probe_fit[_synthetic].json)",
    )
    args = p.parse_args(argv)
    if args.c <= 0:
        p.error("--c must be > 0")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --- features --------------------------------------------------------------------------------


def synthetic_features(y: Tensor, groups: list[str], seed: int) -> dict[str, Tensor]:
    """Gaussian features shaped like pooled activations: a shared low-rank part (correlated
    features, as in a residual stream), a per-scenario offset, per-feature scales, and one
    planted label direction per layer whose strength rises and falls over the layers
    (held-out AUROC from ~0.5 to ~0.9)."""
    gen = torch.Generator().manual_seed(seed)
    n, d, rank = len(y), SYNTHETIC_DIM, 16
    sign = (2 * y.float() - 1)[:, None]
    names = sorted(set(groups))
    group_index = torch.tensor([names.index(g) for g in groups])
    features = {}
    for layer in range(SYNTHETIC_LAYERS):
        loadings = 2.0 * torch.randn(rank, d, generator=gen)
        shared = torch.randn(n, rank, generator=gen) @ loadings
        offsets = 0.5 * torch.randn(len(names), d, generator=gen)[group_index]
        direction = torch.randn(d, generator=gen)
        direction /= direction.norm()
        strength = 1.5 * math.sin(math.pi * layer / (SYNTHETIC_LAYERS - 1))
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


def real_features(args: argparse.Namespace, transcripts: list[Any]) -> dict[str, Tensor]:
    from interp.models import load_model

    model = load_model(args.model, device=args.device)
    hooks = tuple(hook_name(layer) for layer in range(model.n_layers))
    folder = args.cache_dir or cache_root() / "activations"
    key = CacheKey(
        model_name=model.name,
        model_fingerprint=model.fingerprint,
        dataset_hash=dataset_hash(transcripts),
        n_transcripts=len(transcripts),
        hooks=tuple(sorted(hooks)),
        tokens=args.tokens,
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
            args.tokens,
            batch_size=args.batch_size,
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    transcripts = build_consistency()
    y = torch.tensor([t.label for t in transcripts])
    groups = [t.group for t in transcripts]
    if args.synthetic:
        print("Synthetic features [768, 576] x 30 with a planted direction", flush=True)
        features = synthetic_features(y, groups, args.seed)
    else:
        features = real_features(args, transcripts)
    train, test = group_split(groups, args.test_fraction, args.seed)
    names = list(features)

    # Inputs prepared outside the timed region: device tensors for ours, numpy for sklearn.
    ours_in = {n: features[n][train].float().to(device) for n in names}
    ours_test = {n: features[n][test].float().to(device) for n in names}
    sk_in = {n: features[n][train].float().numpy() for n in names}
    sk_test = {n: features[n][test].float().numpy() for n in names}
    y_train_dev, y_train_np = y[train].to(device), y[train].numpy()
    y_test = y[test]

    print(
        f"{len(names)} feature sets of shape {list(features[names[0]].shape)}, "
        f"{len(train)} train / {len(test)} test rows; warm-up...",
        flush=True,
    )
    fit_ours(ours_in[names[0]], y_train_dev, args.c, args.ours_tol, device)
    fit_sklearn(sk_in[names[0]], y_train_np, args.c, args.sk_max_iter, args.sk_tol)

    ours_t: dict[str, list[float]] = {n: [] for n in names}
    sk_t: dict[str, list[float]] = {n: [] for n in names}
    totals: dict[str, list[float]] = {"ours": [], "sklearn": []}
    ours_fit: dict[str, LogisticProbe] = {}
    sk_fit: dict[str, tuple[Any, Any]] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for r in range(args.repeats):
            order = ("ours", "sklearn") if r % 2 == 0 else ("sklearn", "ours")
            for method in order:
                total = 0.0
                for n in names:
                    if method == "ours":
                        ours_fit[n], dt = fit_ours(
                            ours_in[n], y_train_dev, args.c, args.ours_tol, device
                        )
                        ours_t[n].append(dt)
                    else:
                        scaler, clf, dt = fit_sklearn(
                            sk_in[n], y_train_np, args.c, args.sk_max_iter, args.sk_tol
                        )
                        sk_fit[n] = (scaler, clf)
                        sk_t[n].append(dt)
                    total += dt
                totals[method].append(total)
            print(
                f"  repeat {r + 1}/{args.repeats}: ours {totals['ours'][-1]:.2f}s, "
                f"sklearn {totals['sklearn'][-1]:.2f}s",
                flush=True,
            )
    sk_warnings = sorted({str(w.message).splitlines()[0] for w in caught})

    rows = []
    for n in names:
        probe = ours_fit[n]
        scaler, clf = sk_fit[n]
        a_ours = auroc(y_test, probe.score(ours_test[n]).cpu())
        a_sk = auroc(y_test, torch.from_numpy(clf.decision_function(scaler.transform(sk_test[n]))))
        d_sk = torch.from_numpy(clf.coef_[0] / scaler.scale_).float()
        cosine = float(torch.dot(probe.direction.cpu(), d_sk / d_sk.norm()))
        rows.append(
            {
                "features": n,
                "ours_s": statistics.median(ours_t[n]),
                "sklearn_s": statistics.median(sk_t[n]),
                "auroc_ours": a_ours,
                "auroc_sklearn": a_sk,
                "abs_auroc_diff": abs(a_ours - a_sk),
                "direction_cosine": cosine,
                "sklearn_n_iter": int(clf.n_iter_[0]),
            }
        )
    median = {m: statistics.median(v) for m, v in totals.items()}
    ratio = median["sklearn"] / median["ours"]
    max_diff = max(r["abs_auroc_diff"] for r in rows)
    not_converged = [r["features"] for r in rows if r["sklearn_n_iter"] >= args.sk_max_iter]

    print()
    print(
        f"{'synthetic' if args.synthetic else args.model} features, C={args.c}, ours on "
        f"{device} ({torch.get_num_threads()} threads), scikit-learn on CPU; "
        f"median of {args.repeats}"
    )
    width = max(len("features"), *(len(n) for n in names))
    header = (
        f"{'features':<{width}} {'ours s':>7} {'sk s':>7} {'AUROC ours':>10} {'AUROC sk':>9} "
        f"{'|diff|':>7} {'cos':>6} {'sk iter':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['features']:<{width}} {r['ours_s']:>7.3f} {r['sklearn_s']:>7.3f} "
            f"{r['auroc_ours']:>10.4f} {r['auroc_sklearn']:>9.4f} {r['abs_auroc_diff']:>7.4f} "
            f"{r['direction_cosine']:>6.3f} {r['sklearn_n_iter']:>7}"
        )
    print("-" * len(header))
    print(
        f"total fit time (median): ours {median['ours']:.2f} s, "
        f"scikit-learn {median['sklearn']:.2f} s"
    )
    print(f"max |AUROC ours - AUROC sklearn| = {max_diff:.4f}")
    if not_converged:
        print(f"warning: scikit-learn hit max_iter on {not_converged}")
    for w in sk_warnings:
        print(f"warning during fits: {w}")
    print(f"RATIO sklearn/ours = {ratio:.2f}  (total fit time; > 1 means ours is faster)")

    default_name = "probe_fit_synthetic.json" if args.synthetic else "probe_fit.json"
    out = args.out or cache_root() / "benchmarks" / default_name
    import sklearn

    result = {
        "benchmark": "probe_fit",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "n_train": len(train),
        "n_test": len(test),
        "shape": list(features[names[0]].shape),
        "totals_s": totals,
        "median_total_s": median,
        "ratio_sklearn_over_ours": ratio,
        "max_abs_auroc_diff": max_diff,
        "sklearn_not_converged": not_converged,
        "warnings": sk_warnings,
        "layers": rows,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(Path(out), result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
