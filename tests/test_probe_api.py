"""The probe package's API: configs that accept what the CLI accepts, saved runs read back,
and scoring new text with a saved probe (with its model, hook and token checks)."""

from __future__ import annotations

import pytest
import torch

from interp.cache import cache_activations
from interp.config import ConfigError
from interp.hooks import HookError, hook_name
from interp.probe import (
    ProbeConfig,
    format_table,
    load_probe,
    load_run,
    score_transcripts,
    train_probe,
)
from probes import LogisticProbe, ProbeMeta, ProbeMismatchError


@pytest.mark.parametrize(
    ("given", "layers"),
    [(14, (14,)), ("0-3", (0, 1, 2, 3)), ("7,0", (0, 7)), ([3, 1, 3], (1, 3)), ((5,), (5,))],
)
def test_config_accepts_what_the_cli_accepts(given, layers):
    assert ProbeConfig(layers=given).layers == layers


@pytest.mark.parametrize(
    ("given", "match"),
    [(-1, ">= 0"), ("3-1", "cannot read layers"), ("abc", "cannot read layers"), ((), "empty")],
)
def test_config_refuses_bad_layers_with_the_fix(given, match):
    with pytest.raises((HookError, ConfigError), match=match):
        ProbeConfig(layers=given)


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-api")
    config = ProbeConfig(
        model="tiny-random",
        layers="0-1",
        max_scenarios=6,
        n_random=4,
        progress=False,
        cache_dir=str(root / "cache"),
        out=str(root / "run"),
    )
    return train_probe(config, model=tiny_model)


def test_load_run_rebuilds_the_run(run):
    loaded = load_run(run.out_dir)
    assert format_table(loaded) == format_table(run)
    assert loaded.to_json() == run.to_json()
    for layer, probe in run.probes.items():
        assert torch.equal(loaded.probe(layer).direction, probe.direction)
        assert loaded.probe(layer).meta == probe.meta


def test_load_probe_and_its_errors(run, tmp_path):
    probe = load_probe(run.out_dir, 1)
    assert torch.equal(probe.direction, run.probes[1].direction)
    with pytest.raises(FileNotFoundError, match=r"no probe for layer 7; it has layers \[0, 1\]"):
        load_probe(run.out_dir, 7)
    with pytest.raises(FileNotFoundError, match="not a probe run folder"):
        load_run(tmp_path)
    with pytest.raises(KeyError, match="probed"):
        run.probe(9)


def test_score_transcripts_equals_the_pipeline(run, tiny_model, small_dataset, tmp_path):
    probe = load_probe(run.out_dir, 1)
    scores = score_transcripts(tiny_model, probe, small_dataset, cache_dir=tmp_path)
    acts = cache_activations(
        tiny_model, small_dataset, [probe.meta.hook], "answer", cache_dir=tmp_path, progress=False
    )
    assert scores.shape == (len(small_dataset),)
    assert torch.allclose(scores, probe.score(acts[probe.meta.hook]))


def test_score_set_refuses_other_tokens_hook_or_model(run, tiny_model, small_dataset, tmp_path):
    probe = load_probe(run.out_dir, 1)  # trained on 'answer' tokens at blocks.1.hook_resid_post
    reply = cache_activations(
        tiny_model, small_dataset, [probe.meta.hook], "reply", cache_dir=tmp_path, progress=False
    )
    with pytest.raises(ProbeMismatchError, match="tokens='answer'"):
        probe.score_set(reply)
    other_hook = cache_activations(
        tiny_model, small_dataset, [hook_name(0)], "answer", cache_dir=tmp_path, progress=False
    )
    with pytest.raises(ProbeMismatchError, match="not the probe's"):
        probe.score_set(other_hook)
    probe.meta.model_fingerprint = "another-model"
    answer = cache_activations(
        tiny_model, small_dataset, [probe.meta.hook], "answer", cache_dir=tmp_path, progress=False
    )
    with pytest.raises(ProbeMismatchError, match="model_fingerprint"):
        probe.score_set(answer)


def test_score_keeps_leading_dimensions():
    X = torch.randn(40, 8)
    y = (X[:, 0] > 0).long()
    probe = LogisticProbe(meta=ProbeMeta()).fit(X, y)
    per_token = torch.randn(3, 5, 8)
    scores = probe.score(per_token)
    assert scores.shape == (3, 5)
    assert torch.allclose(scores[1], probe.score(per_token[1]))
    assert probe.score(per_token[0, 0]).shape == ()
    with pytest.raises(ProbeMismatchError, match="fitted on 8 features"):
        probe.score(torch.randn(4, 9))


# --- run folders: identity and one writer (issue 20, point 4) --------------------------------


def test_a_run_folder_of_another_dtype_is_not_replaced(run, tmp_path):
    import shutil
    from dataclasses import replace

    from interp.models import load_model

    folder = tmp_path / "run"
    shutil.copytree(run.out_dir, folder)
    half = load_model("tiny-random", device="cpu", dtype="bfloat16")
    for dtype in ("bfloat16", "auto"):  # auto: as it resolves on a GPU that has bfloat16
        config = replace(run.config, dtype=dtype, out=str(folder))
        with pytest.raises(ConfigError) as info:
            train_probe(config, model=half)
        assert "model_dtype: saved 'float32', requested 'bfloat16'" in str(info.value)
        assert f"delete {folder}" in str(info.value)
    assert load_run(folder).to_json() == run.to_json()


def test_an_auto_dtype_run_names_its_default_folder_by_the_resolved_dtype(tmp_path):
    from interp.probe.pipeline import default_out_dir

    cpu = default_out_dir(ProbeConfig(), "m", tmp_path, "float32")
    gpu = default_out_dir(ProbeConfig(), "m", tmp_path, "bfloat16")
    assert cpu == default_out_dir(ProbeConfig(), "m", tmp_path)  # the name runs always had
    assert gpu.name == cpu.name + "-bfloat16"
    explicit = ProbeConfig(dtype="bfloat16")
    assert default_out_dir(explicit, "m", tmp_path, "bfloat16").name == cpu.name + "-bfloat16"


def test_a_second_writer_of_a_run_folder_waits_then_is_refused(run, tiny_model, tmp_path):
    import json
    import threading
    from dataclasses import replace

    from interp.locks import folder_lock

    folder = tmp_path / "run"
    errors: list[Exception] = []

    def second() -> None:
        try:
            train_probe(replace(run.config, out=str(folder)), model=tiny_model)
        except Exception as err:
            errors.append(err)

    with folder_lock(folder):  # a first writer is busy in the folder
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=3)
        assert thread.is_alive()  # the second run waits for it
        saved = json.loads((run.out_dir / "config.json").read_text())
        saved["config"]["seed"] = 5  # the first writer saves a run of other settings
        (folder / "config.json").write_text(json.dumps(saved))
    thread.join(timeout=300)
    assert len(errors) == 1 and "seed: saved 5, requested 0" in str(errors[0])
    assert not (folder / "metrics.json").exists()  # never both "saved"
