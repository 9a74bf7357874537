"""The batched probe solver (probes.batched) against LogisticProbe, scikit-learn and select_c."""

from __future__ import annotations

import pytest
import torch

from probes import LogisticProbe, MeanDiffProbe, auroc, fit_per_layer
from probes.batched import fit_logistic_grid, fit_mean_diff_many, select_c_many
from probes.select import select_c


def _data(n: int = 160, d: int = 120, layers: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=gen) < 0.5).long()
    features = {}
    for k in range(layers):
        scales = torch.exp(torch.randn(d, generator=gen))
        X = torch.randn(n, d, generator=gen) + 3.0 * torch.randn(d, generator=gen)
        X[:, :4] += (0.3 + 0.4 * k) * y[:, None]
        features[f"L{k}"] = X * scales
    groups = [f"g{i % 10}" for i in range(n)]
    return features, y, groups


@pytest.mark.parametrize("shape", [(160, 120), (150, 40)])  # n > d and n < d (after the folds)
def test_grid_matches_logistic_probe(shape):
    features, y, _ = _data(*shape)
    rows = [torch.arange(110), torch.arange(40, shape[0])]
    grid = (0.001, 0.1, 10.0)
    fitted = fit_logistic_grid(features, y, rows, grid)
    assert len(fitted) == len(features) * len(rows) * len(grid)
    held_out = torch.arange(110, shape[0])
    for (name, j, c), probe in fitted.items():
        ref = LogisticProbe(c=c).fit(features[name][rows[j]], y[rows[j]])
        assert float(torch.dot(probe.direction, ref.direction)) > 0.9999
        assert torch.allclose(probe.mean, ref.mean) and torch.allclose(probe.std, ref.std)
        assert abs(float(probe.bias - ref.bias)) < 1e-3 * (1 + abs(float(ref.bias)))
        X = features[name][held_out]
        assert abs(auroc(y[held_out], probe.score(X)) - auroc(y[held_out], ref.score(X))) < 1e-6


def test_grid_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn")
    del sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, y, _ = _data(200, 80, layers=2)
    train, test = torch.arange(150), torch.arange(150, 200)
    fitted = fit_logistic_grid(features, y, [train], (0.01, 1.0))
    for (name, _, c), probe in fitted.items():
        X = features[name].double().numpy()
        scaler = StandardScaler().fit(X[:150])
        clf = LogisticRegression(C=c, max_iter=10_000, tol=1e-10).fit(
            scaler.transform(X[:150]), y[:150].numpy()
        )
        sk_dir = torch.from_numpy(clf.coef_[0] / scaler.scale_).float()
        assert float(torch.dot(probe.direction, sk_dir / sk_dir.norm())) > 0.9999
        sk_scores = torch.from_numpy(clf.decision_function(scaler.transform(X[150:])))
        ours = auroc(y[test], probe.score(features[name][test]))
        assert abs(ours - auroc(y[test], sk_scores)) < 1e-3


def test_select_c_many_matches_select_c():
    features, y, groups = _data(200, 150, layers=3, seed=1)
    # one pure-noise feature set: its scores are flat, so the smaller-c tie rule matters
    features["noise"] = torch.randn(200, 150, generator=torch.Generator().manual_seed(5))
    chosen = select_c_many(features, y, groups, n_folds=4, seed=3)
    for name, X in features.items():
        best, results = select_c(X, y, groups, n_folds=4, seed=3)
        assert chosen[name][0] == best
        assert chosen[name][1].keys() == results.keys()
        for c in results:
            assert abs(chosen[name][1][c] - results[c]) < 1e-9


def test_fit_per_layer_batched_equals_unbatched():
    features, y, _ = _data(120, 60)
    train = torch.arange(90)
    for make in (lambda name: LogisticProbe(c=0.5), lambda name: MeanDiffProbe()):
        slow = fit_per_layer(features, y, train, make)
        fast = fit_per_layer(features, y, train, make, batched=True)
        for name in features:
            assert float(torch.dot(slow[name].direction, fast[name].direction)) > 0.9999
            assert type(fast[name]) is type(slow[name]) and fast[name].d_in == 60


def test_mean_diff_many_equals_one_by_one():
    features, y, _ = _data(100, 30)
    train = torch.arange(70)
    many = fit_mean_diff_many(features, y, train)
    for name, X in features.items():
        one = MeanDiffProbe().fit(X[train], y[train])
        assert torch.allclose(many[name].unit, one.unit, atol=1e-6)
        assert torch.allclose(many[name].midpoint, one.midpoint, atol=1e-5)


def test_converged_systems_are_left_alone():
    """A system already at its optimum is not stepped (nor factorised) while another one in
    the same block still converges to its own optimum: the per-system bookkeeping of the
    active-only factorisation puts each direction back on its own system."""
    from probes.batched import _block, _solve

    features, y, _ = _data(120, 50, layers=2)
    Xs, ys = [features["L0"][:90], features["L1"][:100]], [y[:90], y[:100]]
    blk = _block(Xs, ys)
    u = torch.full((2,), 1.0 / 0.5, dtype=torch.float64)
    zeros_b = torch.zeros(2, dtype=torch.float64)
    alpha, b, _ = _solve(blk, u, torch.zeros_like(blk.y), zeros_b, 1e-10, 100)
    start_alpha = torch.stack([alpha[0], torch.zeros_like(alpha[1])])
    start_b = torch.stack([b[0], torch.zeros_like(b[1])])
    again, again_b, steps = _solve(blk, u, start_alpha, start_b, 1e-10, 100)
    assert steps > 0
    assert torch.equal(again[0], alpha[0]) and torch.equal(again_b[0], b[0])
    assert torch.allclose(again[1], alpha[1], atol=1e-8)
    assert abs(float(again_b[1] - b[1])) < 1e-8


def test_selection_rules():
    """Ties go to the smaller c; a fold with one label on a side is skipped, and none left
    is an error that says so."""
    from probes.select import best_c, usable_folds

    assert best_c({0.01: 0.7, 0.1: 0.7, 1.0: 0.69}) == 0.01
    assert best_c({0.01: 0.6, 0.1: 0.7}) == 0.1
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    y = torch.tensor([0, 1, 0, 1, 0, 1, 1, 1])  # group d holds only positives
    usable = usable_folds(y, groups, n_folds=4)
    assert len(usable) == 3
    assert all(set(y[fold].tolist()) == {0, 1} for _, fold in usable)
    with pytest.raises(ValueError, match="both labels on each side"):
        usable_folds(torch.tensor([1, 1, 1, 1, 1, 1, 1, 1]), groups, n_folds=4)
