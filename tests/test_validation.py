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
