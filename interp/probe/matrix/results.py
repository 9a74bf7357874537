"""What a cross-dataset matrix run produced: one :class:`MatrixCell` per (training set, test
set, layer), the sets it read (:class:`SetSummary`), and reading a saved run back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.probe.matrix.config import MatrixConfig


@dataclass
class SetSummary:
    """One set of the matrix: its name, size, token selection and split."""

    spec: str
    name: str
    n: int
    n_positive: int
    n_groups: int
    n_train: int  # rows of its training scenarios (what its probe is fitted on)
    n_test: int  # rows of its held-out scenarios (its own diagonal cell)
    tokens: str
    n_marker_missing: int  # replies without the selection's marker (read whole)
    n_truncated: int
    grader: str | None = None


@dataclass
class MatrixCell:
    """A probe trained on ``train`` (its training scenarios) scored on ``test``: the held-out
    scenarios when the two are one set, every row otherwise."""

    train: str
    test: str
    layer: int
    n: int
    n_positive: int
    auroc: float | None
    auroc_low: float | None
    auroc_high: float | None
    recall_at_1pct_control: float  # deceptive rows above the control set's 1%-FPR threshold
    flagged_honest_at_1pct_control: float  # honest rows above that threshold
    recall_at_1pct_own: float | None  # at 1% FPR among the test set's own honest rows
    layer0_auroc: float | None  # the same probe kind fitted on token embeddings
    random_auroc_p95: float  # 95th percentile of random directions' max(a, 1 - a)
    stances: dict[str, float | None] = field(default_factory=dict)


@dataclass
class MatrixRun:
    config: MatrixConfig
    model_name: str
    model_fingerprint: str
    date: str
    control: str
    control_n: int
    sets: list[SetSummary]
    cells: list[MatrixCell]
    chosen_c: dict[str, dict[str, float]] = field(default_factory=dict)  # set -> hook -> C
    out_dir: Path | None = None

    def cell(self, train: str, test: str, layer: int) -> MatrixCell:
        for c in self.cells:
            if (c.train, c.test, c.layer) == (train, test, layer):
                return c
        raise KeyError(f"no cell train={train!r} test={test!r} layer={layer}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        data.pop("out_dir")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MatrixRun:
        return cls(
            **{
                **data,
                "config": MatrixConfig(
                    **{
                        **data["config"],
                        "sets": tuple(data["config"]["sets"]),
                        "layers": tuple(data["config"]["layers"]),
                    }
                ),
                "sets": [SetSummary(**s) for s in data["sets"]],
                "cells": [MatrixCell(**c) for c in data["cells"]],
            }
        )


def load_matrix(out_dir: str | Path) -> MatrixRun:
    """The :class:`MatrixRun` saved in ``out_dir`` (its ``matrix.json``)."""
    path = Path(out_dir) / "matrix.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no matrix.json; is {out_dir} a matrix run folder?")
    run = MatrixRun.from_json(json.loads(path.read_text(encoding="utf-8")))
    run.out_dir = Path(out_dir)
    return run
