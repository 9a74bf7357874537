"""Divergence probes on a hooked model: config, pipeline, results, report, figures.

>>> from interp.probe import ProbeConfig, train_probe, load_run, load_probe

``python -m interp.probe --layer 14`` runs :func:`train_probe` from the command line; a
saved run folder is read back with :func:`load_run` (or one layer with :func:`load_probe`).
Names load on first use (importing the package loads no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:
    from interp.probe.config import ProbeConfig
    from interp.probe.pipeline import train_probe
    from interp.probe.report import format_table, save_run
    from interp.probe.results import (
        LayerResult,
        ProbeRun,
        SetReport,
        load_probe,
        load_run,
        probe_dir,
    )
    from interp.probe.score import score_transcripts
    from interp.probe.token_scores import TokenScores, score_tokens, write_token_html

_EXPORTS = {
    "LayerResult": "interp.probe.results",
    "ProbeConfig": "interp.probe.config",
    "ProbeRun": "interp.probe.results",
    "SetReport": "interp.probe.results",
    "TokenScores": "interp.probe.token_scores",
    "format_table": "interp.probe.report",
    "load_probe": "interp.probe.results",
    "load_run": "interp.probe.results",
    "probe_dir": "interp.probe.results",
    "save_run": "interp.probe.report",
    "score_tokens": "interp.probe.token_scores",
    "score_transcripts": "interp.probe.score",
    "train_probe": "interp.probe.pipeline",
    "write_token_html": "interp.probe.token_scores",
}
__all__ = [
    "LayerResult",
    "ProbeConfig",
    "ProbeRun",
    "SetReport",
    "TokenScores",
    "format_table",
    "load_probe",
    "load_run",
    "probe_dir",
    "save_run",
    "score_tokens",
    "score_transcripts",
    "train_probe",
    "write_token_html",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
