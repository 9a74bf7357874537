"""Out-of-core activations: the lazy ActivationSet, and probe fits streamed shard by shard.

"The same probe" here means unit directions within 1e-5 of each other in Euclidean norm
(:func:`probes.streaming.direction_difference`; ``1 - cos`` is half its square), the
in-memory fit on the same rows being the reference.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pytest
import torch

from interp.cache import CacheIntegrityError, cache_activations, load_activation_set
from interp.cache.activation_set import CheckedShard
from interp.data.split import split_transcripts
from interp.hooks import hook_name
from interp.probe import ProbeConfig, format_table, pipeline, train_probe
from probes import LogisticProbe, MeanDiffProbe, auroc
from probes.batched import select_c_many
from probes.streaming import (
    direction_difference,
    fit_streaming,
    select_c_streaming,
    tensor_blocks,
)

HOOK = hook_name(1)
HOOKS = [HOOK, hook_name(0, "resid_pre")]
BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench_cache_memory.py"


@pytest.fixture(scope="module")
def acts(tiny_model, small_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("ooc")
    return cache_activations(
        tiny_model, small_dataset, HOOKS, cache_dir=root, shard_size=8, progress=False
    )


@pytest.fixture(scope="module")
def split(small_dataset):
    y = torch.tensor([t.label for t in small_dataset])
    train, test = split_transcripts(small_dataset, 0.34, 0)
    return y, train, test


def count_reads(monkeypatch) -> list[str]:
    """Every tensor read from a shard after opening (``CheckedShard.read``), by name."""
    names: list[str] = []
    read = CheckedShard.read

    def counted(self, name):
        names.append(name)
        return read(self, name)

    monkeypatch.setattr(CheckedShard, "read", counted)
    return names


def test_opening_reads_no_vector_and_each_hook_is_read_once(acts, monkeypatch):
    reads = count_reads(monkeypatch)
    opened = load_activation_set(acts.path, expect=acts.key)
    assert reads == [] and len(opened.shards) == 6
    assert torch.equal(opened.n_selected, acts.n_selected)
    X = opened[HOOK]
    assert reads == [f"pooled.{HOOK}"] * 6
    assert opened[HOOK] is X and len(reads) == 6  # kept
    opened.release(HOOK)
    assert torch.equal(opened[HOOK], X) and len(reads) == 12
    one_shard = opened.checked[2].rows[:3]
    blocks = list(opened.blocks(HOOK, one_shard))
    assert len(reads) == 13 and len(blocks) == 1  # shards without the rows are not read


def test_blocks_read_and_map_rows_agree_with_the_matrix(acts):
    X = acts[HOOK]
    rows = torch.tensor([40, 3, 17, 3, 0, 29])  # a repeat, several shards, any order
    assert torch.equal(acts.read(HOOK, rows), X[rows])
    assert torch.equal(acts.read(HOOK), X)
    seen = torch.cat([index for index, _ in acts.blocks(HOOK, rows)])
    assert sorted(seen.tolist()) == sorted(set(rows.tolist()))  # each once
    for index, block in acts.blocks(HOOK):
        assert torch.equal(block, X[index])
    sums = acts.map_rows(HOOK, rows, lambda block: block.sum(1))
    torch.testing.assert_close(sums, X[rows].sum(1))
    assert acts.nbytes(HOOK) == X.numel() * 4 and acts.nbytes(HOOK, rows) == 6 * X.shape[1] * 4
    with pytest.raises(IndexError, match=r"rows must lie in 0\.\.47 .* got 0\.\.48"):
        acts.read(HOOK, torch.tensor([0, 48]))
    with pytest.raises(KeyError, match="is not in this cache"):
        list(acts.blocks("blocks.7.hook_resid_post"))


def test_a_shard_rewritten_after_opening_is_refused(acts, tmp_path):
    folder = tmp_path / acts.path.name
    shutil.copytree(acts.path, folder)
    opened = load_activation_set(folder)
    shard = folder / opened.shards[4]
    blob = shard.read_bytes()
    shard.unlink()
    shard.write_bytes(blob)  # same bytes, another file: not the one that was checked
    with pytest.raises(CacheIntegrityError, match=rf"{shard.name} was removed or rewritten"):
        opened.read(HOOK)
    assert torch.equal(load_activation_set(folder)[HOOK], acts[HOOK])  # reopened: checked again


@pytest.mark.parametrize("c", [0.01, 1.0, 100.0])
def test_streamed_logistic_fit_is_the_in_memory_fit(acts, split, c):
    y, train, _ = split
    reference = LogisticProbe(c=c).fit(acts[HOOK][train], y[train])
    streamed = fit_streaming(LogisticProbe(c=c), lambda r: acts.blocks(HOOK, r), y, train)
    assert direction_difference(streamed, reference) < 1e-5
    assert streamed.n_iter == reference.n_iter
    torch.testing.assert_close(streamed.bias, reference.bias, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(streamed.mean, reference.mean)
    torch.testing.assert_close(streamed.std, reference.std)


def test_streamed_mean_diff_is_the_exact_fit(acts, split):
    """Against the exact (float64) difference of class means; the in-memory float32 fit is
    itself off by ~2e-5 here, where the two class means nearly cancel."""
    y, train, _ = split
    X, positive = acts[HOOK][train].double(), y[train].bool()
    exact = X[positive].mean(0) - X[~positive].mean(0)
    streamed = fit_streaming(MeanDiffProbe(), lambda r: acts.blocks(HOOK, r), y, train)
    assert float((streamed.direction.double() - exact / exact.norm()).norm()) < 1e-6
    in_memory = MeanDiffProbe().fit(acts[HOOK][train], y[train])
    assert direction_difference(streamed, in_memory) < 1e-4
    torch.testing.assert_close(streamed.midpoint, in_memory.midpoint)


def test_synthetic_cache_fit_matches_in_memory(tmp_path):
    """A cache written in the cache format (the benchmark's synthetic writer): 3,000 rows in
    shards of 256 that do not follow dataset order, standardisation far from zero mean."""
    write = runpy.run_path(str(BENCH))["write_synthetic_cache"]
    folder, y = write(tmp_path, n=3000, d=24, shard_size=256, seed=1)
    opened = load_activation_set(folder, verify=True)
    hook = opened.hooks[0]
    rows = torch.arange(0, 3000, 3)
    reference = LogisticProbe(c=1.0).fit(opened[hook][rows], y[rows])
    streamed = fit_streaming(LogisticProbe(c=1.0), lambda r: opened.blocks(hook, r), y, rows)
    assert direction_difference(streamed, reference) < 1e-5
    assert auroc(y[rows], reference.score(opened[hook][rows])) > 0.75  # the planted signal


def test_streamed_c_selection_is_the_batched_one(acts, split, small_dataset):
    y, train, _ = split
    groups = [small_dataset[i].group for i in train.tolist()]
    (best, aurocs) = select_c_many({HOOK: acts[HOOK][train]}, y[train], groups, n_folds=2)[HOOK]
    got, got_aurocs = select_c_streaming(
        lambda r: acts.blocks(HOOK, r), y, train, groups, n_folds=2
    )
    assert got == best
    for c, value in aurocs.items():
        assert abs(got_aurocs[c] - value) < 1e-6


def test_streaming_refuses_what_it_cannot_fit(acts, split):
    y, train, _ = split
    read = tensor_blocks(acts[HOOK])
    with pytest.raises(ValueError, match="both labels"):
        fit_streaming(LogisticProbe(), read, y, train[y[train] == 1])
    with pytest.raises(ValueError, match="must not repeat"):
        fit_streaming(LogisticProbe(), read, y, torch.cat([train, train[:1]]))
    with pytest.raises(ValueError, match="exactly once"):
        fit_streaming(LogisticProbe(), lambda r: read(r[1:]), y, train)

    class Other(MeanDiffProbe):
        kind = "other"

    with pytest.raises(ValueError, match="Other has no streaming fit"):
        fit_streaming(Other(), read, y, train)


def test_the_pipeline_streams_past_its_budget_with_the_same_results(
    tiny_model, tmp_path, monkeypatch
):
    def run(name: str):
        config = ProbeConfig(
            model="tiny-random",
            layers="0-1",
            max_scenarios=6,
            n_random=4,
            progress=False,
            cache_dir=str(tmp_path / "cache"),
            out=str(tmp_path / name),
        )
        return train_probe(config, model=tiny_model)

    in_memory = run("memory")
    calls = {"fit": 0, "select": 0}
    fit, select = pipeline.fit_streaming, pipeline.select_c_streaming

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(pipeline, "fit_streaming", counted("fit", fit))
    monkeypatch.setattr(pipeline, "select_c_streaming", counted("select", select))
    monkeypatch.setattr(pipeline, "MAX_IN_MEMORY_BYTES", 0)
    streamed = run("streamed")
    assert calls == {"fit": 3, "select": 3}  # layers 0, 1 and the layer-0 control
    assert format_table(streamed) == format_table(in_memory)
    for layer, probe in in_memory.probes.items():
        assert direction_difference(streamed.probes[layer], probe) < 1e-5
