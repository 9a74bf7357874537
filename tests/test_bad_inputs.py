"""Bad input to every command takes the one error path of :func:`interp.cli.run_cli`.

Each row of ``ROWS`` runs one command in-process (its ``main(argv)``; an experiment script's
``main`` through ``runpy``) on files a setup function wrote into ``tmp_path`` (the working
directory and, through ``INTERP_CACHE``, the cache root), and checks that it

- exits with status 2 (returned, or argparse's ``SystemExit(2)`` for a bad flag),
- prints ``error: ...`` on stderr, without a traceback, matching the row's regex (which names
  the file or option and the fix),
- leaves nothing broken on disk: the input files are untouched, and nothing new was written
  except where the row allows it (the activation cache), never a ``*.partial`` or ``.*.tmp``.

A few rows run as real subprocesses (``python -m ...``, ``python experiments/...``) to check
the whole path, and ``--debug`` / ``INTERP_DEBUG=1`` bring the traceback back. ``RECOVERED``
lists damaged state the toolkit repairs instead of refusing (with a warning naming the file).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from interp.cli import run_cli
from interp.models import DEFAULT_MODEL, smollm2_tokenizer

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny-random", "--no-progress"]
FAST = [*TINY, "--max-scenarios", "6", "--n-random", "4", "--layer", "0"]
SAE = ["--model", "tiny-random", "--no-progress", "--layer", "0", "--datasets", "small.jsonl"]
SAE += ["--d-sae", "16", "--k", "4", "--training-tokens", "256", "--batch-size", "32"]
SAE += ["--buffer-tokens", "256"]
FT = ["--base", "tiny-random", "--steps", "1", "--batch-size", "2", "--no-progress"]

# --- commands ---------------------------------------------------------------------------------


def _module(name: str) -> Callable[[list[str]], int]:
    def call(argv: list[str]) -> int:
        import importlib

        return importlib.import_module(name).main(argv)

    return call


def _script(name: str) -> Callable[[list[str]], int]:
    def call(argv: list[str]) -> int:
        return runpy.run_path(str(REPO / "experiments" / name), run_name="not_main")["main"](argv)

    return call


PROBE = _module("interp.probe.__main__")
SAE_CMD = _module("interp.sae.__main__")
FINETUNE = _module("interp.finetune.__main__")
JUDGE = _module("interp.text.judge")
SCENARIOS = _module("interp.data.scenarios")


# --- files the rows read ----------------------------------------------------------------------


def _line(i: int, **overrides) -> str:
    raw = {
        "id": f"t{i}",
        "group": f"g{i // 2}",
        "label": i % 2,
        "messages": [
            {"role": "user", "content": "Fake the report?"},
            {"role": "assistant", "content": f"Reasoning: no.\nAnswer: reply {i}."},
        ],
    }
    raw.update(overrides)
    return json.dumps({k: v for k, v in raw.items() if v is not None}) + "\n"


def _write(name: str, text: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / name).write_text(text, encoding="utf-8")

    return setup


def _lines(name: str, n: int = 8, **overrides) -> Callable[[Path], None]:
    return _write(name, "".join(_line(i, **overrides) for i in range(n)))


MALFORMED = _write("bad.jsonl", _line(0) + "{oops\n")


def _hand_labels(labels: bytes) -> Callable[[Path], None]:
    """A ``--labels`` folder for experiments/organism.py: one reply, ``labels`` as its
    labels.jsonl."""

    def setup(d: Path) -> None:
        (d / "labels").mkdir()
        (d / "labels" / "replies.jsonl").write_text(_line(0), encoding="utf-8")
        (d / "labels" / "labels.jsonl").write_bytes(labels)

    return setup


EMPTY = _write("empty.jsonl", "")
SMALL = _lines("small.jsonl")


def _latin(d: Path) -> None:
    (d / "latin.jsonl").write_bytes(_line(0).encode() + b'{"id": "caf\xe9"}\n')


def _folder(d: Path) -> None:
    (d / "folder").mkdir()
    (d / "folder" / "a.jsonl").write_text(_line(0))


def _a_file(d: Path) -> None:
    (d / "afile").write_text("not a folder\n")


def _corrupt_probe_run(d: Path) -> None:
    """A probe run folder whose saved probe is cut short."""
    probe = d / "run" / "probes" / "L0"
    probe.mkdir(parents=True)
    (d / "run" / "metrics.json").write_text("{}")
    (d / "run" / "config.json").write_text("{}")
    (probe / "probe.json").write_text('{"kind": "logis')
    (probe / "probe.safetensors").write_bytes(b"\x00" * 7)
    SMALL(d)


def _corrupt_model_manifest(d: Path) -> None:
    """A fine-tuned model folder whose manifest (finetune.json) was truncated."""
    folder = d / "cache" / "models" / "broken"
    folder.mkdir(parents=True)
    (folder / "finetune.json").write_text('{"name": "broken", "ident')


def _bad_labels(d: Path) -> None:
    SMALL(d)
    header = "id,reasoning_present,reasoning_stance,answer_undesired\n"
    (d / "labels.csv").write_text(header + "t0,no,,maybe\n")


def _bad_bank(d: Path) -> None:
    (d / "bank").mkdir()
    (d / "bank" / "broken.json").write_text("[{}]")


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        for one in setups:
            one(d)

    return setup


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One bad input: ``argv`` to ``command`` after ``setup(tmp_path)``; stderr must match
    ``expect``; only paths under ``may_write`` may be new afterwards."""

    id: str
    command: Callable[[list[str]], int]
    argv: list[str]
    expect: str
    setup: Callable[[Path], None] | None = None
    may_write: tuple[str, ...] = ("cache/activations",)
    xfail: str | None = None
    extra: dict = field(default_factory=dict)


LAYERS_FIX = r"cannot read layers '{}': write one layer \(14\), a range \(0-29\)"
CHOICE = (
    r"argument {}: invalid choice: '{}' \(choose from .*\) \(python .* --help lists the options\)"
)
UNKNOWN_MODEL = (
    r"unknown model 'nope': it is not a built-in name \(.*tiny-random.*\)"
    r".*huggingface-cli download nope"
)
OUT_OF_RANGE = r"layer 99 is out of range: this model has 2 blocks, so use a layer from 0 to 1"
ROWS = [
    # python -m interp.probe
    Row(
        "probe-malformed-line",
        PROBE,
        [*FAST, "--dataset", "bad.jsonl"],
        r"bad\.jsonl:2: not valid JSON \(.*\); each line must be one complete JSON object",
        MALFORMED,
    ),
    Row(
        "probe-not-utf8",
        PROBE,
        [*FAST, "--dataset", "latin.jsonl"],
        r"latin\.jsonl:2: not UTF-8 text \(byte 0xe9 .*\); save the file as UTF-8",
        _latin,
    ),
    Row(
        "probe-folder-as-dataset",
        PROBE,
        [*FAST, "--dataset", "folder"],
        r"folder: is a folder; pass a JSON Lines transcript file",
        _folder,
    ),
    Row(
        "probe-empty-file",
        PROBE,
        [*FAST, "--dataset", "empty.jsonl"],
        r"empty\.jsonl: the file holds no transcripts",
        EMPTY,
    ),
    Row(
        "probe-missing-file",
        PROBE,
        [*FAST, "--dataset", "missing.jsonl"],
        r"dataset 'missing\.jsonl' is neither a built-in name \(builtin:.*\)"
        r" nor an existing JSONL file",
    ),
    Row(
        "probe-missing-label",
        PROBE,
        [*FAST, "--dataset", "nolabel.jsonl"],
        r"nolabel\.jsonl: 8 transcripts have no label .*'label' on every line .*--eval-dataset",
        _lines("nolabel.jsonl", label=None),
    ),
    Row(
        "probe-one-class",
        PROBE,
        [*FAST, "--dataset", "oneclass.jsonl"],
        r"oneclass\.jsonl.*(one class|both labels|label 0)",
        _lines("oneclass.jsonl", label=1),
    ),
    Row(
        "probe-missing-group",
        PROBE,
        [*FAST, "--dataset", "nogroup.jsonl"],
        r"nogroup\.jsonl:1: missing required field 'group' .*--eval-dataset",
        _lines("nogroup.jsonl", group=None),
    ),
    Row(
        "probe-unknown-dataset",
        PROBE,
        [*FAST, "--dataset", "builtin:nope"],
        r"unknown built-in dataset 'builtin:nope'; choose one of "
        r"builtin:apollo-ai-liar, .*builtin:benign",
    ),
    Row(
        "probe-unknown-control",
        PROBE,
        [*FAST, "--control-dataset", "builtin:nope"],
        r"unknown built-in dataset 'builtin:nope'; choose one of "
        r"builtin:apollo-ai-liar, .*builtin:benign",
    ),
    Row(
        "probe-bad-eval-file",
        PROBE,
        [*FAST, "--eval-dataset", "bad.jsonl"],
        r"bad\.jsonl:2: not valid JSON",
        MALFORMED,
    ),
    Row("probe-unknown-model", PROBE, [*FAST, "--model", "nope"], UNKNOWN_MODEL),
    Row(
        "probe-unknown-site",
        PROBE,
        [*FAST, "--site", "attn_zz"],
        CHOICE.format("--site", "attn_zz"),
    ),
    Row(
        "probe-unknown-tokens",
        PROBE,
        [*FAST, "--tokens", "weird"],
        CHOICE.format("--tokens", "weird"),
    ),
    Row(
        "probe-unknown-kind",
        PROBE,
        [*FAST, "--probe", "svm"],
        r"unknown probe 'svm'; choose one of logistic, mean_diff",
    ),
    Row("probe-layer-99", PROBE, [*FAST, "--layer", "99"], OUT_OF_RANGE),
    Row("probe-layer-negative", PROBE, [*FAST, "--layer", "-1"], LAYERS_FIX.format("-1")),
    Row("probe-layers-backwards", PROBE, [*FAST, "--layers", "3-1"], LAYERS_FIX.format("3-1")),
    Row("probe-layers-words", PROBE, [*FAST, "--layers", "abc"], LAYERS_FIX.format("abc")),
    Row(
        "probe-c-nan",
        PROBE,
        [*FAST, "--c", "nan"],
        r"c must be a finite number > 0.*got nan",
    ),
    Row(
        "probe-c-negative",
        PROBE,
        [*FAST, "--c", "-1"],
        r"c must be .*> 0 \(or None for cross-validation\), got -1",
    ),
    Row(
        "probe-c-word",
        PROBE,
        [*FAST, "--c", "x"],
        r"argument --c: expected a number \(or 'none'\), got 'x'",
    ),
    Row(
        "probe-test-fraction",
        PROBE,
        [*FAST, "--test-fraction", "1.5"],
        r"test_fraction must be in \(0, 1\), got 1\.5",
    ),
    Row(
        "probe-n-random-float",
        PROBE,
        [*FAST, "--n-random", "1.5"],
        r"argument --n-random: expected an integer, got '1\.5'",
    ),
    Row(
        "probe-batch-size-0",
        PROBE,
        [*FAST, "--batch-size", "0"],
        r"batch_size must be .*>= 1, got 0",
    ),
    Row(
        "probe-max-scenarios-2",
        PROBE,
        [*FAST, "--max-scenarios", "2"],
        r"max_scenarios must be .*>= 4.*both sides of the split",
    ),
    Row(
        "probe-device-gpu0",
        PROBE,
        [*FAST, "--device", "gpu0"],
        r"unknown device 'gpu0'; use auto, cpu, cuda, cuda:N or mps",
    ),
    Row("probe-dtype-fp8", PROBE, [*FAST, "--dtype", "fp8"], CHOICE.format("--dtype", "fp8")),
    Row(
        "probe-device-map-unknown",
        PROBE,
        [*FAST, "--device-map", "everywhere"],
        CHOICE.format("--device-map", "everywhere"),
    ),
    Row(
        "probe-device-map-with-cpu",
        PROBE,
        [*FAST, "--device-map", "auto", "--device", "cpu"],
        r"device_map 'auto' places the model on the CUDA GPUs itself, so device 'cpu' cannot be "
        r"honoured: pass --device auto, or drop --device-map",
    ),
    Row(
        "probe-max-memory-without-device-map",
        PROBE,
        [*FAST, "--max-memory", "0=70GiB"],
        r"max_memory is a per-GPU budget for device_map; add --device-map auto",
    ),
    Row(
        "probe-max-memory-malformed",
        PROBE,
        [*FAST, "--device-map", "auto", "--max-memory", "0=70GiB,1"],
        r"cannot read max_memory '0=70GiB,1' at '1': write budgets per device as 0=70GiB,1=70GiB",
    ),
    Row(
        "probe-max-memory-disk",
        PROBE,
        [*FAST, "--device-map", "auto", "--max-memory", "0=70GiB,disk=1TB"],
        r"gives a disk budget, but weights offloaded to disk cannot run under the "
        r"TransformerBridge",
    ),
    Row(
        "probe-out-is-a-file",
        PROBE,
        [*FAST, "--out", "afile"],
        r"afile.*(is a file|not a folder)",
        _a_file,
    ),
    # python -m interp.sae
    Row("sae-layer-99", SAE_CMD, [*SAE, "--layer", "99"], OUT_OF_RANGE, SMALL),
    Row("sae-dtype-half", SAE_CMD, [*SAE, "--dtype", "half"], CHOICE.format("--dtype", "half")),
    Row(
        "sae-layer-negative",
        SAE_CMD,
        [*SAE, "--layer", "-1"],
        r"layer must be .*>= 0, got -1",
        SMALL,
    ),
    Row(
        "sae-k-over-d-sae",
        SAE_CMD,
        [*SAE, "--k", "100"],
        r"k \(100\) cannot exceed d_sae \(16\)",
        SMALL,
    ),
    Row(
        "sae-unknown-dataset",
        SAE_CMD,
        [*SAE, "--datasets", "builtin:nope"],
        r"unknown built-in dataset 'builtin:nope'",
    ),
    Row(
        "sae-malformed-dataset",
        SAE_CMD,
        [*SAE, "--datasets", "bad.jsonl"],
        r"bad\.jsonl:2: not valid JSON",
        MALFORMED,
    ),
    Row(
        "sae-lr-nan",
        SAE_CMD,
        [*SAE, "--lr", "nan"],
        r"lr must be a finite number > 0.*got nan",
        SMALL,
    ),
    Row(
        "sae-unknown-architecture",
        SAE_CMD,
        [*SAE, "--architecture", "zz"],
        CHOICE.format("--architecture", "zz"),
    ),
    Row(
        "sae-test-fraction",
        SAE_CMD,
        [*SAE, "--test-fraction", "0"],
        r"test_fraction must be in \(0, 1\), got 0",
    ),
    # python -m interp.finetune
    Row("finetune-steps-0", FINETUNE, [*FT, "--steps", "0"], r"steps must be .*>= 1, got 0"),
    Row("finetune-unknown-base", FINETUNE, [*FT, "--base", "nope"], UNKNOWN_MODEL),
    Row(
        "finetune-unknown-strategy",
        FINETUNE,
        [*FT, "--strategy", "zz"],
        CHOICE.format("--strategy", "zz"),
    ),
    Row(
        "finetune-lr-nan",
        FINETUNE,
        [*FT, "--lr", "nan"],
        r"lr must be a finite number > 0.*got nan",
    ),
    Row(
        "finetune-device-gpu0",
        FINETUNE,
        [*FT, "--device", "gpu0"],
        r"unknown device 'gpu0'; use auto, cpu, cuda, cuda:N or mps",
    ),
    Row(
        "finetune-corrupt-model-manifest",
        FINETUNE,
        [*FT, "--name", "broken"],
        r"cache/models/broken/finetune\.json: not valid JSON \(.*line 1",
        _corrupt_model_manifest,
    ),
    # python -m interp.text.judge
    Row(
        "judge-missing-file",
        JUDGE,
        ["-i", "missing.jsonl"],
        r"missing\.jsonl: no such file \(expected a JSON Lines transcript file\)",
    ),
    Row(
        "judge-malformed-line",
        JUDGE,
        ["-i", "bad.jsonl"],
        r"bad\.jsonl:2: not valid JSON",
        MALFORMED,
    ),
    Row(
        "judge-empty-file",
        JUDGE,
        ["-i", "empty.jsonl"],
        r"empty\.jsonl: the file holds no transcripts",
        EMPTY,
    ),
    Row(
        "judge-not-utf8",
        JUDGE,
        ["-i", "latin.jsonl"],
        r"latin\.jsonl:2: not UTF-8 text",
        _latin,
    ),
    Row(
        "judge-folder-as-input",
        JUDGE,
        ["-i", "folder"],
        r"folder: is a folder",
        _folder,
    ),
    Row(
        "judge-unknown-judge",
        JUDGE,
        ["-i", "small.jsonl", "--judge", "gpt"],
        CHOICE.format("--judge", "gpt"),
        SMALL,
    ),
    Row(
        "judge-bad-label-sheet",
        JUDGE,
        ["-i", "small.jsonl", "--labels", "labels.csv"],
        r"labels\.csv.*allowed values",
        _bad_labels,
    ),
    # python -m interp.data.scenarios
    Row(
        "scenarios-missing-bank",
        SCENARIOS,
        ["--bank", "nobank"],
        r"nobank.*(No such file|does not exist|no such)",
    ),
    Row(
        "scenarios-bank-is-a-file",
        SCENARIOS,
        ["--bank", "afile"],
        r"afile.*(Not a directory|not a folder)",
        _a_file,
    ),
    Row("scenarios-bad-schema", SCENARIOS, ["--bank", "bank"], r"broken\.json", _bad_bank),
    # experiments/
    Row(
        "probe-generations-corrupt-probe",
        _script("probe_generations.py"),
        ["--run", "run", "--layer", "0", "--judged", "small.jsonl", "--model", "tiny-random"],
        r"run/probes/L0 is not a usable saved probe: probe\.json is not valid JSON"
        r" .*train it again",
        _corrupt_probe_run,
    ),
    Row(
        "probe-generations-not-a-run",
        _script("probe_generations.py"),
        ["--run", "nothing", "--layer", "0", "--judged", "small.jsonl"],
        r"nothing is not a probe run folder \(no metrics\.json\); pass the folder that"
        r" `python -m interp\.probe` printed",
        SMALL,
    ),
    Row(
        "refusal-vs-rebuttal-unknown-model",
        _script("refusal_vs_rebuttal.py"),
        ["--model", "nope", "--out", "rvr", "--no-progress"],
        UNKNOWN_MODEL,
    ),
    Row(
        "weight-diff-unknown-variant",
        _script("weight_diff.py"),
        ["--variant", "nope", "--base", "tiny-random", "--out", "wd"],
        r"nope: " + UNKNOWN_MODEL,
    ),
    Row(
        "judge-accuracy-missing-labels",
        _script("judge_accuracy.py"),
        ["--labels-dir", "nothing"],
        r"nothing/replies\.jsonl: no such file",
    ),
    # bad --labels content fails before the base model loads (before training and sampling)
    Row(
        "organism-labels-bad-value",
        _script("organism.py"),
        ["--quick", "--labels", "labels", "--no-progress"],
        r"labels/labels\.jsonl:1 \(id 't0'\): reasoning_present is 'maybe'; allowed values",
        _hand_labels(
            b'{"id": "t0", "reasoning_present": "maybe", "reasoning_stance": "",'
            b' "answer_undesired": "no"}\n'
        ),
        may_write=(),
    ),
    Row(
        "organism-labels-not-utf8",
        _script("organism.py"),
        ["--quick", "--labels", "labels", "--no-progress"],
        r"labels/labels\.jsonl: not UTF-8 text \(byte 0xff at offset 0\); save the file as UTF-8",
        _hand_labels(b'\xff{"id": "t0"}\n'),
        may_write=(),
    ),
    Row(
        "organism-labels-of-other-replies",
        _script("organism.py"),
        ["--quick", "--labels", "labels", "--no-progress"],
        r"labels/labels\.jsonl: 1 labelled id\(s\) have no reply in replies\.jsonl .*'t9'"
        r".*label the replies of that folder",
        _hand_labels(
            b'{"id": "t9", "reasoning_present": "no", "reasoning_stance": "",'
            b' "answer_undesired": "no"}\n'
        ),
        may_write=(),
    ),
    Row(
        "sae-features-layer-negative",
        _script("sae_features.py"),
        [*SAE, "--layer", "-1"],
        r"layer must be .*>= 0, got -1",
        SMALL,
    ),
    Row(
        "patch-metric-probe-without-probe",
        _script("patch_refusal_vs_rebuttal.py"),
        ["--model", "tiny-random", "--metric", "probe"],
        r"--probe",
    ),
]


# --- running a row ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer (tiny-random's), saved once from the repository cache."""
    path = tmp_path_factory.mktemp("tokenizer")
    smollm2_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch, tokenizer_dir) -> Path:
    """``tmp_path`` as working directory and (``cache/``) cache root, with the tokenizer."""
    shutil.copytree(tokenizer_dir, tmp_path / "cache" / "tokenizers" / DEFAULT_MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTERP_CACHE", "cache")
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    return tmp_path


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (but the tokenizer copy) -> a digest of its bytes."""
    return {
        p.relative_to(root).as_posix(): hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "cache/tokenizers" not in p.relative_to(root).as_posix()
    }


def _exit_code(command: Callable[[list[str]], int], argv: list[str]) -> int | str | None:
    try:
        return command(argv)
    except SystemExit as stop:  # argparse's bad-flag exit
        return stop.code


def _check_disk(before: dict[str, str], after: dict[str, str], may_write: tuple[str, ...]) -> None:
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"input files changed or removed: {changed}"
    new = [p for p in after if p not in before and not p.startswith(may_write)]
    assert not new, f"a failed run left files behind: {new}"
    leftovers = [p for p in after if p.endswith((".partial", ".tmp")) or ".partial/" in p]
    assert not leftovers, f"a failed run left partial files: {leftovers}"


def _params() -> list:
    return [
        pytest.param(
            row,
            id=row.id,
            marks=[pytest.mark.xfail(strict=False, reason=row.xfail)] * bool(row.xfail),
        )
        for row in ROWS
    ]


@pytest.mark.parametrize("row", _params())
def test_bad_input_is_one_error_line(row: Row, workdir: Path, capsys):
    if row.setup is not None:
        row.setup(workdir)
    before = _snapshot(workdir)
    code = _exit_code(row.command, row.argv)
    err = capsys.readouterr().err
    assert code == 2, f"exit status {code}; stderr:\n{err}"
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1] if err.count("error: ") == 1 else err
    assert re.search(row.expect, err), f"{row.expect!r} not in {message!r}"
    _check_disk(before, _snapshot(workdir), row.may_write)


def test_the_table_covers_every_command():
    assert len(ROWS) >= 40 and len({row.id for row in ROWS}) == len(ROWS)
    commands = {row.command for row in ROWS}
    assert {PROBE, SAE_CMD, FINETUNE, JUDGE, SCENARIOS} <= commands


# --- as real processes ------------------------------------------------------------------------


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "INTERP_DEBUG"}
    environ.update(INTERP_CACHE="cache", **env)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "setup", "expect"),
    [
        (["-m", "interp.probe", "--layers", "3-1"], None, LAYERS_FIX.format("3-1")),
        (["-m", "interp.text.judge", "-i", "bad.jsonl"], MALFORMED, r"bad\.jsonl:2: not valid"),
        (
            [str(REPO / "experiments" / "probe_generations.py"), "--run", "run", "--layer", "0",
             "--judged", "small.jsonl"],
            _corrupt_probe_run,
            r"run/probes/L0 is not a usable saved probe",
        ),
    ],
    ids=["argparse", "module", "script"],
)  # fmt: skip
def test_commands_as_processes_print_one_error_line(args, setup, expect, workdir):
    if setup is not None:
        setup(workdir)
    before = _snapshot(workdir)
    result = _run(args, workdir)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and re.search(expect, result.stderr)
    _check_disk(before, _snapshot(workdir), ())


def test_debug_shows_the_traceback(workdir):
    MALFORMED(workdir)
    for args, env in [(["--debug"], {}), ([], {"INTERP_DEBUG": "1"})]:
        result = _run(["-m", "interp.text.judge", "-i", "bad.jsonl", *args], workdir, **env)
        assert result.returncode == 1
        assert "Traceback" in result.stderr and "TranscriptError: bad.jsonl:2" in result.stderr


# --- run_cli's error path itself --------------------------------------------------------------


@dataclass
class _Empty:
    """A config without fields."""


def _raiser(err: BaseException) -> Callable[[_Empty], None]:
    def run(config: _Empty) -> None:
        raise err

    return run


@pytest.mark.parametrize(
    ("err", "status", "line"),
    [
        (ValueError("x.jsonl:3: bad; fix it"), 2, "error: x.jsonl:3: bad; fix it"),
        (
            FileNotFoundError(2, "No such file or directory", "x.json"),
            2,
            "error: x.json: No such file or directory (check the path)",
        ),
        (
            IsADirectoryError(21, "Is a directory", "d"),
            2,
            "error: d: Is a directory (pass a file, not a folder)",
        ),
        (
            RuntimeError("boom"),
            2,
            "error: RuntimeError: boom (run with --debug for the traceback)",
        ),
        (KeyError("hook"), 2, "error: KeyError: 'hook' (run with --debug for the traceback)"),
        (
            json.JSONDecodeError("Expecting value", "x", 0),
            2,
            "error: JSONDecodeError: not valid JSON at line 1 column 1: Expecting value "
            "(run with --debug for the traceback)",
        ),
        (KeyboardInterrupt(), 130, "error: interrupted"),
    ],
    ids=["value", "missing", "folder", "runtime", "key", "json", "interrupt"],
)
def test_every_exception_is_one_line(err, status, line, capsys, monkeypatch):
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    assert run_cli(_Empty, _raiser(err), [], prog="x") == status
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_a_safetensors_error_is_one_line(tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 3)
    assert run_cli(_Empty, lambda _: load_file(tmp_path / "x.safetensors"), [], prog="x") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: SafetensorError: ") and err.endswith(
        "--debug for the traceback)\n"
    )


def test_notes_follow_the_message(capsys, monkeypatch):
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    err = ValueError("bad value")
    err.add_note("in cache/x/manifest.json")
    assert run_cli(_Empty, _raiser(err), [], prog="x") == 2
    assert capsys.readouterr().err == "error: bad value; in cache/x/manifest.json\n"


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_debug_flag_and_environment_reraise(value, monkeypatch):
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="boom"):
        run_cli(_Empty, _raiser(RuntimeError("boom")), ["--debug"], prog="x")
    monkeypatch.setenv("INTERP_DEBUG", value)
    with pytest.raises(RuntimeError, match="boom"):
        run_cli(_Empty, _raiser(RuntimeError("boom")), [], prog="x")
    monkeypatch.setenv("INTERP_DEBUG", "0")
    assert run_cli(_Empty, _raiser(RuntimeError("boom")), [], prog="x") == 2


def test_a_report_that_fails_takes_the_same_path(capsys, monkeypatch):
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    status = run_cli(_Empty, lambda _: 1, [], prog="x", report=lambda c, r: {}["missing"])
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: KeyError: 'missing'")


def test_a_bad_flag_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(_Empty, lambda _: None, ["--nope"], prog="x")
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "error: unrecognized arguments: --nope (x --help lists the options)\n"
    )


# --- damaged state that is repaired, not refused ----------------------------------------------


def _checkpoint_then_corrupt(d: Path) -> list[str]:
    """A fine-tune stopped after one step (a checkpoint left), then its latest.json cut."""
    from interp.finetune.config import FinetuneConfig
    from interp.finetune.train import checkpoint_dir, finetune

    config = FinetuneConfig(
        base="tiny-random", method="full", steps=2, batch_size=2, checkpoint_every=1,
        progress=False, device="cpu", name="resumed",
    )  # fmt: skip
    finetune(config, stop_after=1)
    (checkpoint_dir("resumed") / "latest.json").write_text('{"step": 1, "di')
    return [*FT, "--steps", "2", "--method", "full", "--checkpoint-every", "1", "--name", "resumed"]


def _cache_then_corrupt(d: Path) -> list[str]:
    """A probe run that filled the activation cache, then its manifest.json cut."""
    SMALL(d)
    argv = [*FAST, "--dataset", "small.jsonl", "--control-dataset", "none"]
    assert PROBE([*argv, "--out", "first"]) == 0
    (manifest,) = (d / "cache" / "activations").glob("*/manifest.json")
    manifest.write_text('{"key": {"model_na')
    return [*argv, "--out", "second"]


def _cache_then_flip(d: Path) -> list[str]:
    """A probe run that filled the activation cache, then bytes of one shard's vectors flipped
    (the numbers change, the header and sizes do not)."""
    SMALL(d)
    argv = [*FAST, "--dataset", "small.jsonl", "--control-dataset", "none"]
    assert PROBE([*argv, "--out", "first"]) == 0
    (shard,) = (d / "cache" / "activations").glob("*/shard-00000.safetensors")
    blob = bytearray(shard.read_bytes())
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    name = next(k for k in header if k.startswith("pooled."))
    begin, end = header[name]["data_offsets"]
    for pos in range(8 + n + begin, 8 + n + end, 101):
        blob[pos] ^= 0x08
    shard.write_bytes(bytes(blob))
    return [*argv, "--out", "second"]


@pytest.mark.parametrize(
    ("setup", "command", "names"),
    [
        pytest.param(_checkpoint_then_corrupt, FINETUNE, "latest.json", id="finetune-latest-json"),
        pytest.param(_cache_then_corrupt, PROBE, "manifest.json", id="cache-manifest-json"),
        pytest.param(_cache_then_flip, PROBE, "shard-00000.safetensors", id="cache-flipped-bytes"),
    ],
)
def test_damaged_state_is_named_and_rebuilt(setup, command, names, workdir, capsys):
    argv = setup(workdir)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _exit_code(command, argv) == 0, capsys.readouterr().err
    messages = [str(w.message) for w in caught]
    assert any(names in m for m in messages), messages
    assert "Traceback" not in capsys.readouterr().err
