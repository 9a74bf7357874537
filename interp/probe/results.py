"""What a probe run produced, and reading a saved run back.

A run folder (written by :func:`interp.probe.report.save_run`) holds ``config.json``,
``metrics.json``, ``table.txt``, ``auroc.html`` and ``probes/L<layer>/``. :func:`load_run`
rebuilds the :class:`ProbeRun` from it (same table, same figure, same probes) and
:func:`load_probe` reads one layer's probe, so nobody rebuilds ``<run>/probes/L<n>`` by hand.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.probe.config import ProbeConfig
from probes import Evaluation, Probe

#: The key of ``ProbeMeta.extra`` that records the dtype the probe's model ran in.
MODEL_DTYPE = "model_dtype"


class ModelDtypeWarning(UserWarning):
    """A probe applied to activations of its model loaded in another dtype than the one it
    was trained on (e.g. trained in float32, scored in bfloat16): the scores shift a little
    rather than being wrong, so it is a warning; the message names both dtypes and the fix."""


def check_model_dtype(probe: Probe, dtype: str) -> None:
    """Warn (:class:`ModelDtypeWarning`) when ``probe`` was trained on activations of its
    model in another dtype than ``dtype`` (the model it is applied to now); probes saved
    before the dtype was recorded are not checked."""
    trained = probe.meta.extra.get(MODEL_DTYPE)
    if trained is not None and trained != dtype:
        warnings.warn(
            f"the probe was trained on activations of {probe.meta.model_name!r} in {trained} "
            f"and is applied to activations of the model in {dtype}: scores may shift slightly; "
            f"load the model with --dtype {trained} to score as trained, or train the probe "
            f"in {dtype}",
            ModelDtypeWarning,
            stacklevel=3,
        )


@dataclass
class SetReport:
    """A trained probe scored on one labelled set."""

    metrics: Evaluation | None
    answer_stance_auroc: float | None
    reasoning_stance_auroc: float | None
    n: int
    n_answer_missing: int
    n_truncated: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SetReport:
        metrics = data.get("metrics")
        return cls(**{**data, "metrics": Evaluation(**metrics) if metrics else None})


@dataclass
class LayerResult:
    layer: int
    hook: str
    c: float | None  # the logistic probe's C (chosen by cross-validation unless given)
    train_auroc: float
    test: SetReport
    random_auroc_mean: float
    random_auroc_p95: float
    control_recall: float | None = None  # recall of held-out divergent replies at the
    control_flagged_consistent: float | None = None  # control-set 1%-FPR threshold
    eval: SetReport | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerResult:
        return cls(
            **{
                **data,
                "test": SetReport.from_json(data["test"]),
                "eval": SetReport.from_json(data["eval"]) if data.get("eval") else None,
            }
        )


@dataclass
class BeforeErasure:
    """With ``erase_stances``: the same run's probes fitted and evaluated on the activations
    as cached (what the run without the option gives, same split and settings), the
    "before" of the erasure; the run's own results are the "after"."""

    layer0: SetReport
    layer0_c: float | None
    layers: list[LayerResult]

    def result(self, layer: int) -> LayerResult:
        return next(r for r in self.layers if r.layer == layer)

    def to_json(self) -> dict[str, Any]:
        return {
            "layer0_control": {**asdict(self.layer0), "c": self.layer0_c},
            "layers": [asdict(r) for r in self.layers],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BeforeErasure:
        layer0 = dict(data["layer0_control"])
        layer0_c = layer0.pop("c", None)
        layers = [LayerResult.from_json(r) for r in data["layers"]]
        return cls(SetReport.from_json(layer0), layer0_c, layers)


@dataclass
class ProbeRun:
    """Everything a probe run produced; ``to_json`` is what ``metrics.json`` holds."""

    config: ProbeConfig
    model_name: str
    model_fingerprint: str
    n_layers: int
    dataset_hash: str
    n_transcripts: int
    train_groups: list[str]
    test_groups: list[str]
    layer0: SetReport
    layer0_c: float | None
    layers: list[LayerResult]
    probes: dict[int, Probe] = field(repr=False)
    out_dir: Path | None = None
    # Training-set replies without an "Answer:" marker (read whole), empty, or cut to
    # max_tokens; None for runs saved before they were counted.
    n_answer_missing: int | None = None
    n_empty: int | None = None
    n_truncated: int | None = None
    # The dtype the model ran in (float32, bfloat16, float16); None for older runs.
    model_dtype: str | None = None
    # With erase_stances: the un-erased fit of the same run (the "before"); else None.
    before_erasure: BeforeErasure | None = None

    def result(self, layer: int) -> LayerResult:
        for r in self.layers:
            if r.layer == layer:
                return r
        raise KeyError(f"layer {layer} was not probed; probed: {[r.layer for r in self.layers]}")

    def probe(self, layer: int) -> Probe:
        """The probe of ``layer``; the error lists the probed layers."""
        if layer not in self.probes:
            raise KeyError(f"layer {layer} was not probed; probed: {sorted(self.probes)}")
        return self.probes[layer]

    def to_json(self) -> dict[str, Any]:
        data = {
            "config": self.config.to_dict(),
            "model": {
                "name": self.model_name,
                "fingerprint": self.model_fingerprint,
                "n_layers": self.n_layers,
                "dtype": self.model_dtype,
            },
            "data": {
                "dataset_hash": self.dataset_hash,
                "n_transcripts": self.n_transcripts,
                "train_groups": self.train_groups,
                "test_groups": self.test_groups,
                "n_answer_missing": self.n_answer_missing,
                "n_empty": self.n_empty,
                "n_truncated": self.n_truncated,
            },
            "layer0_control": {**asdict(self.layer0), "c": self.layer0_c},
            "layers": [asdict(r) for r in self.layers],
        }
        if self.before_erasure is not None:
            data["before_erasure"] = self.before_erasure.to_json()
        return data

    @classmethod
    def from_json(
        cls, data: dict[str, Any], probes: dict[int, Probe], out_dir: Path | None = None
    ) -> ProbeRun:
        layer0 = dict(data["layer0_control"])
        layer0_c = layer0.pop("c", None)
        return cls(
            config=ProbeConfig(**data["config"]),
            model_name=data["model"]["name"],
            model_fingerprint=data["model"]["fingerprint"],
            n_layers=data["model"]["n_layers"],
            dataset_hash=data["data"]["dataset_hash"],
            n_transcripts=data["data"]["n_transcripts"],
            train_groups=data["data"]["train_groups"],
            test_groups=data["data"]["test_groups"],
            layer0=SetReport.from_json(layer0),
            layer0_c=layer0_c,
            layers=[LayerResult.from_json(r) for r in data["layers"]],
            probes=probes,
            out_dir=out_dir,
            n_answer_missing=data["data"].get("n_answer_missing"),
            n_empty=data["data"].get("n_empty"),
            n_truncated=data["data"].get("n_truncated"),
            model_dtype=data["model"].get("dtype"),
            before_erasure=(
                BeforeErasure.from_json(data["before_erasure"])
                if data.get("before_erasure")
                else None
            ),
        )


def probe_dir(run_dir: str | Path, layer: int) -> Path:
    """Where a run keeps the probe of ``layer``: ``<run>/probes/L<layer>``."""
    return Path(run_dir) / "probes" / f"L{layer}"


def _saved_layers(run_dir: Path) -> list[int]:
    folder = run_dir / "probes"
    if not folder.is_dir():
        return []
    return sorted(int(p.name[1:]) for p in folder.glob("L*") if p.name[1:].isdigit())


def load_probe(run_dir: str | Path, layer: int, device: str = "cpu") -> Probe:
    """The probe of ``layer`` saved by a run (``python -m interp.probe --out DIR`` or the
    default ``cache/runs/...`` folder); the error lists the layers the run has. A probe of a
    run with ``erase_stances`` is an :class:`~interp.probe.erased_probe.ErasedProbe`: it
    applies its saved eraser before scoring."""
    run_dir = Path(run_dir)
    folder = probe_dir(run_dir, layer)
    if not (folder / "probe.json").is_file():
        if not (run_dir / "metrics.json").is_file():
            raise FileNotFoundError(
                f"{run_dir} is not a probe run folder (no metrics.json); pass the folder "
                "that `python -m interp.probe` printed"
            )
        raise FileNotFoundError(
            f"{run_dir} has no probe for layer {layer}; it has layers {_saved_layers(run_dir)}"
        )
    from interp.probe.erased_probe import with_saved_eraser

    # a probe fitted on stance-erased activations comes back with its eraser
    return with_saved_eraser(Probe.load(folder, device=device), folder, device)


def load_run(run_dir: str | Path, device: str = "cpu") -> ProbeRun:
    """A saved run, as :func:`interp.probe.train_probe` returned it (probes on ``device``)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a probe run folder (no metrics.json); pass the folder that "
            "`python -m interp.probe` printed"
        )
    data = json.loads(metrics.read_text(encoding="utf-8"))
    probes = {r["layer"]: load_probe(run_dir, r["layer"], device) for r in data["layers"]}
    return ProbeRun.from_json(data, probes, out_dir=run_dir)
