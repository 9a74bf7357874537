"""``--erase-stances``: LEACE stance erasure wired into the probe pipeline.

The erasure maths on synthetic data (both stances erased, the divergence kept, missing or
constant stances refused) is tested with the organism in ``tests/test_organism.py``; here:
erasers fitted on training rows only, every set read through them, the un-erased "before"
kept, saved probes that apply the same edit, the run identity, bad data, the flag, the
streamed path. Tiny random model, a few scenarios.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from interp.cache import cache_activations
from interp.cli import config_from_args, parser_for
from interp.config import ConfigError
from interp.data.transcripts import write_transcripts
from interp.hooks import hook_name
from interp.probe import (
    ProbeConfig,
    format_table,
    load_probe,
    load_run,
    pipeline,
    score_transcripts,
    train_probe,
)
from interp.probe import erasure as erasure_module
from interp.probe.__main__ import main
from interp.probe.erased_probe import ERASER_FILE, ERASER_KEY, ErasedProbe
from interp.probe.erasure import (
    ErasureError,
    erase,
    erased_view,
    fit_stance_eraser,
    fit_stance_erasers,
    stance_matrix,
)
from probes import LogisticProbe, Probe, ProbeMismatchError, auroc
from probes.streaming import tensor_blocks

# Layer 0: the pass stops after block 0; reading block 1 (the last) costs three times as much.
HOOK = hook_name(0)
EVAL = "experiments/data/independent_eval.jsonl"


def _config(tmp_path, name: str, **overrides) -> ProbeConfig:
    settings = dict(
        model="tiny-random",
        layers="0",
        max_scenarios=6,
        n_random=4,
        progress=False,
        cache_dir=str(tmp_path / "cache"),
        out=str(tmp_path / name),
        erase_stances=True,
        control_dataset=None,  # its erasure is the eval set's (one view per set); saves time
    )
    return ProbeConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def fitted_rows():
    """Every row block the pipeline's erasers read while ``erased_run`` was trained."""
    return []


@pytest.fixture(scope="module")
def erased_run(tiny_model, tmp_path_factory, fitted_rows):
    root = tmp_path_factory.mktemp("erased")
    original = erasure_module.fit_stance_eraser

    def recording(read, rows, stances, d, device="cpu"):
        def recorded(asked):
            for block_rows, X in read(asked):
                fitted_rows.append(block_rows.clone())
                yield block_rows, X

        return original(recorded, rows, stances, d, device)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(erasure_module, "fit_stance_eraser", recording)
        return train_probe(_config(root, "run", eval_dataset=EVAL), model=tiny_model)


@pytest.fixture(scope="module")
def raw(erased_run, tiny_model):
    """The run's training data and its un-erased cached activations."""
    data = pipeline.read_datasets(erased_run.config)
    root = erased_run.config.cache_dir
    acts = cache_activations(
        tiny_model, data.train, [HOOK], cache_dir=Path(root) / "activations", progress=False
    )
    return data, acts


# --- fitted on training rows only -----------------------------------------------------------


def test_the_pipeline_fits_its_erasers_on_training_rows_only(erased_run, raw, fitted_rows):
    data, _ = raw
    read = torch.cat(fitted_rows)
    assert len(read) == 2 * len(data.train_rows)  # the layer-0 control's hook and layer 0's
    assert set(read.tolist()) == set(data.train_rows.tolist())
    assert not set(read.tolist()) & set(data.test_rows.tolist())


def test_a_held_out_row_changed_does_not_change_the_eraser():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(60, 8, generator=gen)
    stances = torch.randint(0, 2, (60, 2), generator=gen).float()
    train = torch.arange(40)
    first = fit_stance_eraser(tensor_blocks(X, block_rows=7), train, stances, 8)
    X2, stances2 = X.clone(), stances.clone()
    X2[45] += 100.0  # a held-out row's activations and stances
    stances2[50] = 1 - stances2[50]
    second = fit_stance_eraser(tensor_blocks(X2, block_rows=7), train, stances2, 8)
    for name in ("proj_left", "proj_right", "bias"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    X2[3] += 100.0  # a training row does change it
    third = fit_stance_eraser(tensor_blocks(X2, block_rows=7), train, stances2, 8)
    assert not torch.allclose(first.bias, third.bias)


def test_held_out_rows_need_no_stance(raw):
    data, acts = raw
    test_row = int(data.test_rows[0])
    train = list(data.train)
    train[test_row] = replace(train[test_row], meta={})
    erasers = fit_stance_erasers(acts, [HOOK], train, data.train_rows)
    assert set(erasers) == {HOOK}


# --- what erasure does -------------------------------------------------------------------------


def test_after_erasure_a_stance_refit_on_training_rows_is_at_chance(raw):
    data, acts = raw
    rows = data.train_rows
    erased = erased_view(acts, fit_stance_erasers(acts, [HOOK], data.train, rows))
    Z = stance_matrix([data.train[i] for i in rows.tolist()])
    for column in Z.T:
        z = column.long()
        before = LogisticProbe(c=1.0).fit(acts[HOOK][rows], z).score(acts[HOOK][rows])
        after = LogisticProbe(c=1.0).fit(erased[HOOK][rows], z).score(erased[HOOK][rows])
        assert auroc(z, before) > 0.8
        assert abs(auroc(z, after) - 0.5) < 0.05
        # the class means on the training rows coincide after erasure
        gap = erased[HOOK][rows][z == 1].mean(0) - erased[HOOK][rows][z == 0].mean(0)
        assert float(gap.norm()) < 1e-4 * float(acts[HOOK][rows].norm(dim=1).mean())


def test_every_read_of_an_erased_set_is_erased(raw):
    data, acts = raw
    erasers = fit_stance_erasers(acts, [HOOK], data.train, data.train_rows)
    erased = erased_view(acts, erasers)
    expected = erase(erasers[HOOK], acts[HOOK])
    rows = torch.tensor([5, 0, 5, 17])
    assert not torch.allclose(expected, acts[HOOK])
    assert torch.allclose(erased[HOOK], expected, atol=1e-5)
    assert torch.allclose(erased.read(HOOK, rows), expected[rows], atol=1e-5)
    summed = erased.map_rows(HOOK, rows, lambda X: X.sum(1))
    assert torch.allclose(summed, expected[rows].sum(1), atol=1e-4)
    streamed = torch.cat([X for _, X in erased.blocks(HOOK)])
    order = torch.cat([index for index, _ in erased.blocks(HOOK)])
    assert torch.allclose(streamed, expected[order], atol=1e-5)
    other = erased_view(acts, {})
    assert torch.equal(other[HOOK], acts[HOOK])  # hooks without an eraser read as cached


# --- the pipeline's results -----------------------------------------------------------------


def test_the_run_keeps_the_unerased_fit_as_before(erased_run, tiny_model, tmp_path):
    cache = erased_run.config.cache_dir  # the run's activations: no new pass
    config = _config(tmp_path, "plain", eval_dataset=EVAL, erase_stances=False, cache_dir=cache)
    plain = train_probe(config, model=tiny_model)
    before = erased_run.before_erasure
    assert plain.before_erasure is None and before is not None
    assert before.layers[0].test == plain.layers[0].test
    assert before.layers[0].eval == plain.layers[0].eval
    assert before.layer0 == plain.layer0
    table = format_table(erased_run)
    assert "Stance erasure, before -> after" in table and "Stances erased" in table
    assert "before -> after" not in format_table(plain)
    assert "before_erasure" in erased_run.to_json() and "before_erasure" not in plain.to_json()
    loaded = load_run(erased_run.out_dir)
    assert format_table(loaded) == table
    assert loaded.to_json() == erased_run.to_json()


def test_the_saved_probe_applies_the_same_edit(erased_run, raw, tiny_model):
    data, acts = raw
    probe = load_probe(erased_run.out_dir, 0)
    assert isinstance(probe, ErasedProbe) and isinstance(erased_run.probe(0), ErasedProbe)
    for name in ("proj_left", "proj_right", "bias"):
        assert torch.equal(getattr(probe.eraser, name), getattr(erased_run.probe(0).eraser, name))
    cached = Path(erased_run.config.cache_dir) / "activations"  # the run's: no new pass
    scores = score_transcripts(tiny_model, probe, data.train, cache_dir=cached)
    inner = erased_run.probe(0).probe
    assert torch.allclose(scores, inner.score(erase(probe.eraser, acts[HOOK])), atol=1e-5)
    unerased = inner.score(acts[HOOK])  # the edit moves the scores (a rank-2 edit: a little)
    assert float((scores - unerased).norm()) > 0.05 * float(scores.norm())
    # the held-out AUROC the run reports is that of the saved probe on the raw activations
    test = data.test_rows
    y = torch.tensor([t.label for t in data.train])
    metrics = erased_run.result(0).test.metrics
    assert auroc(y[test], scores[test]) == pytest.approx(metrics.auroc)
    # and so is the eval set's: it was read through the same eraser
    evals = pipeline.read_datasets(erased_run.config).eval
    eval_scores = score_transcripts(tiny_model, probe, evals, cache_dir=cached)
    y_eval = torch.tensor([t.label for t in evals])
    assert auroc(y_eval, eval_scores) == pytest.approx(erased_run.result(0).eval.metrics.auroc)


def test_the_bare_probe_says_it_reads_erased_activations(erased_run):
    folder = erased_run.out_dir / "probes" / "L0"
    bare = Probe.load(folder)
    assert not isinstance(bare, ErasedProbe) and bare.meta.extra[ERASER_KEY] == ERASER_FILE
    assert (folder / ERASER_FILE).is_file()


def test_a_missing_or_damaged_eraser_is_refused(erased_run, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(erased_run.out_dir, folder)
    eraser = folder / "probes" / "L0" / ERASER_FILE
    eraser.write_bytes(eraser.read_bytes()[:100])
    # probe.json records the eraser's size and checksum: the damage is found before reading it
    cut = r"eraser\.safetensors: 100 bytes, but probe\.json records \d+ \(truncated"
    with pytest.raises(ProbeMismatchError, match=cut):
        load_probe(folder, 0)
    eraser.unlink()
    with pytest.raises(ProbeMismatchError, match=r"eraser\.safetensors: missing"):
        load_probe(folder, 0)


def test_the_erased_probe_direction_is_its_score_gradient(erased_run):
    probe = erased_run.probe(0)
    x = torch.randn(1, probe.d_in, requires_grad=True)
    probe.score(x).sum().backward()
    gradient = x.grad[0] / x.grad[0].norm()
    assert torch.allclose(probe.direction, gradient, atol=1e-5)


# --- run identity, bad data, the flag, streaming --------------------------------------------


def test_the_flag_is_part_of_the_run_identity(erased_run, tmp_path):
    plain = replace(erased_run.config, erase_stances=False, out=None)
    erased = replace(erased_run.config, out=None)
    assert "erase_stances" in pipeline.RUN_IDENTITY
    root = tmp_path / "cache"
    assert pipeline.default_out_dir(erased, "m", root).name.endswith("-erased")
    assert pipeline.default_out_dir(plain, "m", root) != pipeline.default_out_dir(erased, "m", root)
    with pytest.raises(ConfigError, match="erase_stances: saved True, requested False"):
        pipeline.check_run_folder(erased_run.out_dir, plain)
    pipeline.check_run_folder(erased_run.out_dir, erased)  # the same settings reuse it


def test_a_run_saved_before_the_flag_existed_reads_as_without_it(erased_run, tmp_path):
    saved = json.loads((erased_run.out_dir / "config.json").read_text())
    del saved["config"]["erase_stances"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    pipeline.check_run_folder(tmp_path, replace(erased_run.config, erase_stances=False))
    with pytest.raises(ConfigError, match="erase_stances: saved False, requested True"):
        pipeline.check_run_folder(tmp_path, erased_run.config)


@pytest.mark.parametrize(
    ("meta", "message"),
    [({"reasoning": "ethical"}, "records no ['answer'] stance"), (None, "takes one value")],
)
def test_data_that_cannot_fit_an_eraser_is_refused_before_the_model_loads(
    small_dataset, tmp_path, monkeypatch, capsys, meta, message
):
    path = tmp_path / "data.jsonl"
    write_transcripts(path, small_dataset)
    config = _config(tmp_path, "bad", dataset=str(path), max_scenarios=None, test_fraction=0.34)
    if meta is None:  # every answer complies: nothing to erase
        data = [replace(t, meta={**t.meta, "answer": "comply"}) for t in small_dataset]
    else:  # one training row without an answer stance (the split depends on groups only)
        row = int(pipeline.read_datasets(config).train_rows[0])
        data = [replace(t, meta=meta) if i == row else t for i, t in enumerate(small_dataset)]
    write_transcripts(path, data)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(pipeline, "load_model", no_model)
    expected = f"--erase-stances cannot fit its stance erasers: .*{re.escape(message)}"
    with pytest.raises(ErasureError, match=expected):
        train_probe(config)
    args = ["--dataset", str(path), "--test-fraction", "0.34", "--erase-stances",
            "--model", "tiny-random"]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and message in error


def test_the_flag_round_trips_through_the_cli():
    parser = parser_for(ProbeConfig, prog="x", aliases={"--layer": "layers"})
    assert config_from_args(ProbeConfig, parser.parse_args([])).erase_stances is False
    on = config_from_args(ProbeConfig, parser.parse_args(["--erase-stances"]))
    assert on.erase_stances is True and on == ProbeConfig(erase_stances=True)
    off = parser.parse_args(["--erase-stances", "--no-erase-stances"])
    assert config_from_args(ProbeConfig, off).erase_stances is False
    assert "--erase-stances" in parser.format_help()


def test_the_cli_prints_before_and_after(erased_run, capsys):
    config = erased_run.config
    args = ["--model", "tiny-random", "--layers", "0", "--max-scenarios", "6", "--n-random", "4",
            "--no-progress", "--cache-dir", config.cache_dir, "--out", config.out,
            "--eval-dataset", EVAL, "--control-dataset", "none", "--erase-stances"]  # fmt: skip
    assert main(args) == 0  # reuses the fixture's folder: same identity
    printed = capsys.readouterr().out
    assert format_table(erased_run) in printed
    rows = [
        line for line in printed.splitlines() if "| held-out |" in line or "| eval set |" in line
    ]
    assert len(rows) == 3 and all(line.count(" -> ") == 3 for line in rows)


def test_the_streamed_path_erases_the_same(erased_run, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_IN_MEMORY_BYTES", 0)
    calls = {"n": 0}
    fit = pipeline.fit_streaming

    def counted(*args, **kwargs):
        calls["n"] += 1
        return fit(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_streaming", counted)
    config = replace(erased_run.config, out=str(tmp_path / "streamed"))
    streamed = train_probe(config, model=tiny_model)
    assert calls["n"] == 4  # layer 0 and the layer-0 control, before and after erasure
    assert format_table(streamed) == format_table(erased_run)
