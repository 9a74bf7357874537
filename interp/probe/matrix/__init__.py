"""The cross-dataset probe matrix: a probe trained on each set, tested on each, per layer,
with AUROC (scenario-bootstrap intervals), recall at 1% false positives on control chat and
the controls beside each cell. ``python -m interp.probe.matrix --help``; the API is
``run_matrix(MatrixConfig(...))``. Reading the table: docs/datasets.md and the README."""

from interp.probe.matrix.config import DEFAULT_SETS, MatrixConfig
from interp.probe.matrix.results import MatrixCell, MatrixRun, SetSummary, load_matrix


def run_matrix(config: MatrixConfig, model=None) -> MatrixRun:
    """Train on each set of ``config``, test on each; see :mod:`interp.probe.matrix.run`."""
    from interp.probe.matrix.run import run_matrix as run

    return run(config, model)


__all__ = [
    "DEFAULT_SETS",
    "MatrixCell",
    "MatrixConfig",
    "MatrixRun",
    "SetSummary",
    "load_matrix",
    "run_matrix",
]
