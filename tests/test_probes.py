import subprocess
import sys

import pytest
import torch

from probes import (
    LogisticProbe,
    MeanDiffProbe,
    NotFittedError,
    Probe,
    ProbeMeta,
    ProbeMismatchError,
    auroc,
    auroc_ci,
    evaluate,
    group_split,
    make_probe,
    recall_at_fpr,
    register_probe,
    threshold_at_fpr,
)


def planted(n=600, d=40, noise=0.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=gen)
    direction /= direction.norm()
    X = torch.randn(n, d, generator=gen) * torch.linspace(0.5, 3, d)  # unequal scales
    y = ((X @ direction + noise * torch.randn(n, generator=gen)) > 0).long()
    return X, y, direction


@pytest.mark.parametrize("kind", [LogisticProbe, MeanDiffProbe])
def test_probe_recovers_a_planted_direction(kind):
    X, y, direction = planted()
    probe = kind().fit(X[:400], y[:400])
    # Mean-diff ignores the unequal feature scales, so it recovers the direction less well.
    logistic = kind is LogisticProbe
    assert auroc(y[400:], probe.score(X[400:])) > (0.95 if logistic else 0.85)
    assert torch.dot(probe.direction, direction) > (0.9 if logistic else 0.5)
    assert probe.predict(X).dtype == torch.bool


def test_logistic_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, y, _ = planted(n=300, d=20, noise=2.0)
    ours = LogisticProbe(c=0.1).fit(X, y)
    Z = (X - X.mean(0)) / X.std(0, unbiased=False)
    ref = sklearn.LogisticRegression(C=0.1, max_iter=5000, tol=1e-8).fit(Z.numpy(), y.numpy())
    torch.testing.assert_close(
        ours.weight, torch.tensor(ref.coef_[0], dtype=torch.float32), atol=2e-3, rtol=2e-3
    )


def test_save_load_round_trip(tmp_path):
    X, y, _ = planted()
    for probe in (LogisticProbe(c=0.5), MeanDiffProbe()):
        probe.meta = ProbeMeta("m", "fp1", "blocks.3.hook_resid_post", "answer")
        probe.fit(X, y)
        probe.threshold = 0.25
        loaded = Probe.load(probe.save(tmp_path / probe.kind))
        assert type(loaded) is type(probe) and loaded.threshold == 0.25
        assert loaded.meta == probe.meta and loaded.settings() == probe.settings()
        torch.testing.assert_close(loaded.score(X), probe.score(X))


def test_mismatch_errors():
    X, y, _ = planted()
    probe = LogisticProbe(meta=ProbeMeta("m", "fp1", "blocks.3.hook_resid_post", "answer")).fit(
        X, y
    )
    probe.check_compatible(model_fingerprint="fp1", hook="blocks.3.hook_resid_post")
    with pytest.raises(ProbeMismatchError, match="model_fingerprint='fp1'"):
        probe.check_compatible(model_fingerprint="fp2")
    with pytest.raises(ProbeMismatchError, match="hook="):
        probe.check_compatible(hook="blocks.4.hook_resid_post")
    with pytest.raises(ProbeMismatchError, match="fitted on 40"):
        probe.score(torch.randn(3, 41))


@pytest.mark.no_typecheck  # fit's own message for a 1-d X (its annotation says [n, d])
def test_bad_input_errors():
    with pytest.raises(NotFittedError, match="call fit"):
        LogisticProbe().score(torch.randn(3, 4))
    with pytest.raises(ValueError, match="both labels"):
        LogisticProbe().fit(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        LogisticProbe().fit(torch.randn(4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="mean_diff"):
        make_probe("svm")
    with pytest.raises(ValueError, match="already registered"):
        register_probe(LogisticProbe)


def test_auroc_by_hand():
    y = torch.tensor([0, 0, 1, 1])
    assert auroc(y, torch.tensor([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auroc(y, torch.tensor([0.5, 0.5, 0.5, 0.5])) == 0.5  # ties count half
    assert auroc(y, torch.tensor([1.0, 2.0, 3.0, 4.0])) == 1.0
    with pytest.raises(ValueError, match="both labels"):
        auroc(torch.tensor([1, 1]), torch.tensor([0.1, 0.2]))


def test_recall_at_fpr_and_threshold():
    negatives = torch.arange(100, dtype=torch.float64)  # 0..99
    assert threshold_at_fpr(negatives, 0.01) == 98.0  # one negative (99) above it
    y = torch.tensor([0] * 100 + [1] * 4)
    scores = torch.cat([negatives, torch.tensor([97.0, 98.5, 99.5, 120.0], dtype=torch.float64)])
    recall, threshold = recall_at_fpr(y, scores, 0.01)
    assert (recall, threshold) == (0.75, 98.0)
    recall, threshold = recall_at_fpr(y, scores, 0.01, negative_scores=torch.tensor([0.0, 1.0]))
    assert threshold == 1.0 and recall == 1.0


def test_bootstrap_interval_and_evaluate():
    X, y, _ = planted(noise=3.0)
    scores = X[:, 0]
    groups = [f"g{i // 20}" for i in range(len(y))]
    low, high = auroc_ci(y, scores, groups, n_boot=200)
    value = auroc(y, scores)
    assert low <= value <= high and high - low > 0.01
    ev = evaluate(y, scores, groups=groups, n_boot=50)
    assert ev.n == len(y) and ev.auroc == value


def test_group_split_never_leaks_a_group():
    groups = [f"s{i % 17}" for i in range(340)]
    strata = [f"d{(i % 17) % 4}" for i in range(340)]
    for seed in range(5):
        train, test = group_split(groups, 0.25, seed, strata=strata)
        train_groups = {groups[i] for i in train.tolist()}
        test_groups = {groups[i] for i in test.tolist()}
        assert not train_groups & test_groups
        assert len(train) + len(test) == len(groups)
        assert len(test_groups) == round(0.25 * 17)
        assert len({strata[i] for i in test.tolist()}) == 4  # spread over strata
    assert torch.equal(group_split(groups, 0.25, 3)[1], group_split(groups, 0.25, 3)[1])
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_split(["a", "a"])


def test_probes_does_not_import_interp():
    code = "import sys, probes; assert not any(m.startswith('interp') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_logistic_probe_on_gpu():
    X, y, _ = planted()
    probe = LogisticProbe().fit(X.cuda(), y.cuda())
    assert probe.weight.is_cuda
    torch.testing.assert_close(
        probe.score(X.cuda()).cpu(), LogisticProbe().fit(X, y).score(X), atol=1e-3, rtol=1e-3
    )


def test_select_c_uses_whole_groups_and_finds_no_signal_in_noise():
    from probes.select import group_folds, select_c

    groups = [f"s{i % 12}" for i in range(240)]
    folds = group_folds(groups, 4)
    assert sorted(torch.cat(folds).tolist()) == list(range(240))
    for fold in folds:
        inside = {groups[i] for i in fold.tolist()}
        assert not inside & {groups[i] for i in range(240) if i not in set(fold.tolist())}
    X, y, _ = planted(n=240, d=200, noise=0.3)
    best, scores = select_c(X, y, groups)
    assert set(scores) == {0.001, 0.01, 0.1, 1.0, 10.0} and scores[best] == max(scores.values())
    assert scores[best] > 0.8
    _, noise_scores = select_c(torch.randn(240, 200), y, groups)
    assert max(noise_scores.values()) < 0.6  # validation folds are unseen groups
