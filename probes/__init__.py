"""Linear probes on activations. Depends on torch only (never on ``interp``).

>>> from probes import LogisticProbe, evaluate, group_split
"""

from probes.base import NotFittedError, Probe, ProbeMeta, ProbeMismatchError
from probes.batched import fit_logistic_grid, fit_mean_diff_many, select_c_many
from probes.kinds import make_probe, probe_class, probe_kinds, register_probe
from probes.logistic import LogisticProbe
from probes.mean_diff import MeanDiffProbe
from probes.metrics import (
    Evaluation,
    accuracy,
    auroc,
    auroc_ci,
    evaluate,
    recall_at_fpr,
    threshold_at_fpr,
)
from probes.registry import Registry
from probes.split import group_split
from probes.sweep import fit_per_layer

__all__ = [
    "Evaluation",
    "LogisticProbe",
    "MeanDiffProbe",
    "NotFittedError",
    "Probe",
    "ProbeMeta",
    "ProbeMismatchError",
    "Registry",
    "accuracy",
    "auroc",
    "auroc_ci",
    "evaluate",
    "fit_logistic_grid",
    "fit_mean_diff_many",
    "fit_per_layer",
    "group_split",
    "make_probe",
    "probe_class",
    "probe_kinds",
    "recall_at_fpr",
    "register_probe",
    "select_c_many",
    "threshold_at_fpr",
]
