"""Validation at the door: nothing is read that was not written.

Saved probes are checked before use (a table of tampered folders), configs refuse NaN,
infinite and out-of-range numbers, and bad input files, devices and run folders fail before
any work with a message naming the thing and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from probes import LogisticProbe, MeanDiffProbe, Probe, ProbeMeta, ProbeMismatchError

# --- Probe.load: a table of tampered folders ------------------------------------------------


def _fitted(kind: str = "logistic") -> Probe:
    X = torch.randn(40, 8)
    y = torch.tensor([0, 1] * 20)
    X[y == 1] += 1.0
    probe = LogisticProbe(c=1.0) if kind == "logistic" else MeanDiffProbe()
    probe.meta = ProbeMeta("tiny", "fp", "blocks.1.hook_resid_post", "answer")
    return probe.fit(X, y)


def _edit_json(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        config = json.loads((folder / "probe.json").read_text())
        change(config)
        (folder / "probe.json").write_text(json.dumps(config))

    return tamper


def _edit_tensors(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        tensors = load_file(folder / "probe.safetensors")
        change(tensors)
        save_file(tensors, str(folder / "probe.safetensors"))

    return tamper


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data)


def _truncate(folder: Path) -> None:
    data = (folder / "probe.safetensors").read_bytes()
    (folder / "probe.safetensors").write_bytes(data[: len(data) // 2])


TAMPERINGS: dict[str, tuple[Callable[[Path], None], str]] = {
    "not JSON": (_write("probe.json", b'{"kind": "logistic",'), "not valid JSON"),
    "not UTF-8": (_write("probe.json", b'{"kind": "\xff"}'), "not UTF-8"),
    "JSON list": (_write("probe.json", b"[1, 2]"), "not a JSON object"),
    "missing kind": (_edit_json(lambda c: c.pop("kind")), "lacks the keys ['kind']"),
    "missing threshold": (_edit_json(lambda c: c.pop("threshold")), "lacks the keys"),
    "extra key": (_edit_json(lambda c: c.update(bias=3)), "unknown keys ['bias']"),
    "other format": (_edit_json(lambda c: c.update(format_version=9)), "format_version is 9"),
    "unknown kind": (_edit_json(lambda c: c.update(kind="svm")), "kind 'svm' is not a registered"),
    "swapped kind": (_edit_json(lambda c: c.update(kind="mean_diff")), "refuses settings"),
    "unknown setting": (_edit_json(lambda c: c["settings"].update(k=3)), "refuses settings"),
    "NaN setting": (_edit_json(lambda c: c["settings"].update(c=math.nan)), "refuses settings"),
    "NaN threshold": (_edit_json(lambda c: c.update(threshold=math.nan)), "threshold must be"),
    "text threshold": (_edit_json(lambda c: c.update(threshold="0")), "threshold must be"),
    "zero d_in": (_edit_json(lambda c: c.update(d_in=0)), "d_in must be a positive integer"),
    "wrong d_in": (_edit_json(lambda c: c.update(d_in=9)), "expected (9,) for d_in=9"),
    "edited hook": (
        _edit_json(lambda c: c["meta"].update(hook="blocks.1.attn")),
        "not a residual-stream hook name",
    ),
    "unknown meta key": (_edit_json(lambda c: c["meta"].update(layer=1)), "meta must be"),
    "meta of wrong type": (
        _edit_json(lambda c: c["meta"].update(model_name=3)),
        "meta.model_name must be",
    ),
    "no tensors": (lambda f: (f / "probe.safetensors").unlink(), "probe.safetensors is missing"),
    "truncated tensors": (_truncate, "cannot be read"),
    "garbage tensors": (_write("probe.safetensors", b"\xff" * 64), "cannot be read"),
    "wrong shape": (
        _edit_tensors(lambda t: t.update(weight=torch.zeros(7))),
        "'weight' has shape (7,)",
    ),
    "missing tensor": (_edit_tensors(lambda t: t.pop("bias")), "holds tensors"),
    "extra tensor": (_edit_tensors(lambda t: t.update(scale=torch.ones(8))), "holds tensors"),
    "NaN weights": (
        _edit_tensors(lambda t: t["weight"].__setitem__(0, math.nan)),
        "'weight' holds NaN",
    ),
    "infinite mean": (
        _edit_tensors(lambda t: t["mean"].__setitem__(0, math.inf)),
        "'mean' holds NaN or infinite",
    ),
    "integer tensor": (
        _edit_tensors(lambda t: t.update(weight=torch.zeros(8, dtype=torch.int64))),
        "dtype torch.int64",
    ),
}


def test_an_untouched_probe_loads(tmp_path):
    probe = _fitted()
    loaded = Probe.load(probe.save(tmp_path / "probe"))
    assert torch.equal(loaded.direction, probe.direction)


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_probe_load_refuses_a_tampered_folder(name, tmp_path):
    tamper, message = TAMPERINGS[name]
    folder = _fitted().save(tmp_path / "probe")
    tamper(folder)
    with pytest.raises(ProbeMismatchError) as info:
        Probe.load(folder)
    text = str(info.value)
    assert str(folder) in text and message in text
    assert "re-save the probe" in text or "import the module" in text


def test_probe_load_checks_mean_diff_shapes_too(tmp_path):
    folder = _fitted("mean_diff").save(tmp_path / "md")
    _edit_tensors(lambda t: t.update(unit=torch.zeros(3)))(folder)
    with pytest.raises(ProbeMismatchError, match=r"'unit' has shape \(3,\)"):
        Probe.load(folder)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"c": math.nan}, "c "),
        ({"c": math.inf}, "c "),
        ({"tol": 0.0}, "tol"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_logistic_probe_refuses_nan_and_out_of_range_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        LogisticProbe(**settings)


# --- configs refuse NaN, infinities and out-of-range numbers ------------------------------

NAN, INF = math.nan, math.inf


def _config_cases() -> list[tuple[str, dict[str, Any], str]]:
    probe = [
        ({"c": NAN}, "c must be a finite number > 0 (or None for cross-validation), got nan"),
        ({"c": INF}, "c must be a finite number > 0"),
        ({"c": -1.0}, "c must be > 0"),
        ({"test_fraction": NAN}, "test_fraction must be a finite number in (0, 1)"),
        ({"test_fraction": 1.0}, "test_fraction must be in (0, 1), got 1.0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"max_tokens": 2.5}, "max_tokens must be an integer >= 1"),
        ({"n_random": 0}, "n_random must be >= 1"),
        ({"max_scenarios": 3}, "max_scenarios must be >= 4 so both sides"),
    ]
    sae = [
        ({"lr": NAN}, "lr must be a finite number > 0"),
        ({"lr": INF}, "lr must be a finite number > 0"),
        ({"l1_coefficient": NAN}, "l1_coefficient must be a finite number >= 0"),
        ({"l1_coefficient": -1.0}, "l1_coefficient must be >= 0"),
        ({"test_fraction": INF}, "test_fraction must be a finite number in (0, 1)"),
        ({"seed": -2}, "seed must be >= 0"),
        ({"k": 0}, "k must be >= 1"),
    ]
    finetune = [
        ({"lr": NAN}, "lr must be a finite number > 0"),
        ({"lora_alpha": INF}, "lora_alpha must be a finite number > 0"),
        ({"test_fraction": NAN}, "test_fraction must be a finite number in (0, 1)"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"split_seed": -1}, "split_seed must be >= 0"),
        ({"checkpoint_every": -1}, "checkpoint_every must be >= 0"),
        ({"benign_per_batch": 4}, "benign_per_batch must be in [0, 4)"),
    ]
    generation = [
        ({"temperature": INF}, "temperature must be a finite number >= 0"),
        ({"temperature": NAN}, "temperature must be a finite number >= 0"),
        ({"top_p": NAN}, "top_p must be a finite number in (0, 1]"),
        ({"repetition_penalty": INF}, "repetition_penalty must be a finite number > 0"),
        ({"seed": -1}, "seed must be >= 0"),
    ]
    return [
        *(("probe", kw, m) for kw, m in probe),
        *(("sae", kw, m) for kw, m in sae),
        *(("finetune", kw, m) for kw, m in finetune),
        *(("generation", kw, m) for kw, m in generation),
    ]


@pytest.mark.parametrize(("config", "given", "message"), _config_cases())
def test_configs_refuse_bad_numbers_naming_the_option_and_range(config, given, message):
    from interp.finetune.config import FinetuneConfig
    from interp.probe.config import ProbeConfig
    from interp.sae.config import SAEConfig
    from interp.text.generation import GenerationConfig

    cls = {
        "probe": ProbeConfig,
        "sae": SAEConfig,
        "finetune": FinetuneConfig,
        "generation": GenerationConfig,
    }[config]
    with pytest.raises(ValueError) as info:
        cls(**given)
    assert message in str(info.value)


def test_cli_refuses_c_nan_before_any_work(capsys, tmp_path):
    from interp.probe.__main__ import main

    for value in ("nan", "inf"):
        assert main(["--c", value, "--cache-dir", str(tmp_path)]) == 2
        assert "c must be a finite number > 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# --- input files: groups, folders, encodings -------------------------------------------------

REPLY = {"role": "assistant", "content": "Reasoning: no.\nAnswer: I won't."}


def _line(i: int, group: str | None = "g", label: int | None = 0) -> str:
    raw: dict[str, Any] = {"id": f"t{i}", "messages": [REPLY]}
    if group is not None:
        raw["group"] = group
    if label is not None:
        raw["label"] = label
    return json.dumps(raw)


def test_a_missing_group_names_file_and_line(tmp_path):
    from interp.data.transcripts import TranscriptError, load_transcripts

    path = tmp_path / "d.jsonl"
    path.write_text(_line(0) + "\n" + _line(1, group=None) + "\n")
    with pytest.raises(TranscriptError, match=rf"{path}:2: missing required field 'group'"):
        load_transcripts(path)
    # data that is only scored may leave it out: the id stands in
    loaded = load_transcripts(path, require_group=False)
    assert [t.group for t in loaded] == ["g", "t1"]


def test_eval_dataset_may_leave_out_groups_but_training_data_may_not(tmp_path):
    from interp.data.datasets import load_dataset

    path = tmp_path / "scored.jsonl"
    path.write_text(_line(0, group=None) + "\n")
    with pytest.raises(ValueError, match="missing required field 'group'"):
        load_dataset(str(path))
    assert load_dataset(str(path), require_group=False)[0].group == "t0"


def test_a_folder_given_as_dataset_says_so(tmp_path):
    from interp.data.datasets import load_dataset

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.jsonl").write_text(_line(0) + "\n")
    with pytest.raises(ValueError) as info:
        load_dataset(str(tmp_path / "data"))
    text = str(info.value)
    assert f"{tmp_path / 'data'}: is a folder" in text and "x.jsonl" in text
    assert "no such file" not in text


def test_non_utf8_input_names_file_line_and_fix(tmp_path):
    from interp.data.transcripts import TranscriptError, load_transcripts

    path = tmp_path / "latin1.jsonl"
    path.write_bytes((_line(0) + "\n").encode() + b'{"id": "caf\xe9"}\n')
    with pytest.raises(TranscriptError) as info:
        load_transcripts(path)
    text = str(info.value)
    assert f"{path}:2: not UTF-8 text (byte 0xe9 at column 12)" in text
    assert "save the file as UTF-8" in text


# --- devices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["gpu0", "cuda0", "tpu", "cuda:x", ""])
def test_unknown_device_strings_are_refused_up_front(device):
    from interp.models import load_model
    from interp.models.placement import PlacementError

    with pytest.raises(
        PlacementError, match=r"unknown device .*use auto, cpu, cuda, cuda:N or mps"
    ):
        load_model("tiny-random", device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_a_gpu_names_the_fix():
    from interp.models.placement import PlacementError, resolve_device

    for device in ("cuda", "cuda:1"):
        with pytest.raises(PlacementError, match=r"no CUDA GPU \(this machine has: cpu.*'cpu' or"):
            resolve_device(device)
    assert resolve_device("cpu") == torch.device("cpu")


def test_cli_device_gpu0_is_an_error_line_not_a_traceback(capsys, tmp_path):
    from interp.probe.__main__ import main

    assert main(["--model", "tiny-random", "--device", "gpu0", "--cache-dir", str(tmp_path)]) == 2
    assert "unknown device 'gpu0'" in capsys.readouterr().err


# --- the probe pipeline: run folders, --out, trainable data, training-set counts --------------


def _quick(tmp_path: Path, **overrides: Any):
    from interp.probe.config import ProbeConfig

    settings: dict[str, Any] = dict(
        model="tiny-random",
        layers=(1,),
        max_scenarios=6,
        n_random=4,
        progress=False,
        control_dataset=None,
        cache_dir=str(tmp_path / "cache"),
    )
    return ProbeConfig(**{**settings, **overrides})


def test_run_folder_is_named_by_what_changes_the_result(tmp_path):
    from interp.probe.config import ProbeConfig
    from interp.probe.pipeline import default_out_dir

    runs = tmp_path / "runs" / "smollm2-135m-instruct"
    name = "consistency-resid_post-answer-logistic-L14"
    assert default_out_dir(ProbeConfig(), "smollm2-135m-instruct", tmp_path) == runs / name
    quick = ProbeConfig(seed=3, max_scenarios=4, c=0.1, test_fraction=0.3)
    assert default_out_dir(quick, "smollm2-135m-instruct", tmp_path) == (
        runs / f"{name}-seed3-max4-c0.1-test0.3"
    )
    # settings that do not change the numbers keep the name
    same = ProbeConfig(device="cpu", batch_size=4, eval_dataset="x.jsonl", progress=False)
    assert default_out_dir(same, "smollm2-135m-instruct", tmp_path) == runs / name


def test_a_run_folder_made_with_other_settings_is_not_overwritten(tmp_path, tiny_model):
    from interp.config import ConfigError
    from interp.probe.pipeline import check_run_folder, train_probe

    folder = tmp_path / "run"
    folder.mkdir()
    saved = json.loads(json.dumps(_quick(tmp_path).to_dict()))
    (folder / "config.json").write_text(json.dumps({"config": saved}))
    check_run_folder(folder, _quick(tmp_path, eval_dataset="x.jsonl", batch_size=4))  # fine
    with pytest.raises(ConfigError) as info:
        train_probe(_quick(tmp_path, seed=3, out=str(folder)), model=tiny_model)
    text = str(info.value)
    assert f"run folder {folder} was made with other settings (seed: saved 0, requested 3)" in text
    assert "pass --out DIR" in text and f"delete {folder}" in text
    assert not (tmp_path / "cache" / "activations").exists()  # refused before any work


def test_out_pointing_at_a_file_fails_before_any_work(tmp_path, capsys):
    from interp.probe.__main__ import main

    file = tmp_path / "results.txt"
    file.write_text("keep me\n")
    args = ["--model", "tiny-random", "--max-scenarios", "6", "--no-progress"]
    assert main([*args, "--out", str(file), "--cache-dir", str(tmp_path / "cache")]) == 2
    assert f"--out {file} is a file, not a folder" in capsys.readouterr().err
    assert file.read_text() == "keep me\n"
    assert not (tmp_path / "cache").exists()


def _dataset(tmp_path: Path, groups: int, labels: tuple[int, ...]) -> str:
    path = tmp_path / "train.jsonl"
    lines = [
        _line(g * len(labels) + i, group=f"g{g}", label=label)
        for g in range(groups)
        for i, label in enumerate(labels)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("groups", "labels", "message"),
    [
        (8, (0, 0), r"every transcript has label \[0\]; a probe needs both labels"),
        (2, (0, 1), "the training side of the split .* holds 1 scenarios"),
    ],
)
def test_untrainable_data_fails_before_the_forward_pass(tmp_path, groups, labels, message):
    from interp.config import ConfigError
    from interp.probe.pipeline import train_probe

    config = _quick(tmp_path, dataset=_dataset(tmp_path, groups, labels), max_scenarios=None)
    with pytest.raises(ConfigError, match=message):
        train_probe(config)  # no model given: it fails before loading one
    assert not (tmp_path / "cache").exists()


def test_training_set_counts_are_printed(tmp_path, tiny_model):
    from interp.probe.pipeline import train_probe
    from interp.probe.report import format_table
    from interp.probe.results import load_run

    run = train_probe(_quick(tmp_path, out=str(tmp_path / "run")), model=tiny_model)
    line = (
        f"Training set builtin:consistency ({run.n_transcripts} transcripts; 0 without an "
        "'Answer:' marker, read whole; 0 empty; 0 truncated)."
    )
    assert line in format_table(run).splitlines()
    assert format_table(load_run(run.out_dir)) == format_table(run)
