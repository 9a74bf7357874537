"""``python -m interp.probe --layer 14``: train and evaluate a divergence probe.

All options are the fields of :class:`interp.probe.config.ProbeConfig` (``--help`` lists them).
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.probe.config import ProbeConfig


def _report(config: ProbeConfig, run) -> str:
    from interp.probe.report import format_table

    return f"{format_table(run)}\n\nSaved probes, metrics, config and figure to {run.out_dir}"


def _train(config: ProbeConfig):
    from interp.probe.pipeline import train_probe  # loads torch and the model stack

    return train_probe(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        ProbeConfig,
        _train,
        argv,
        prog="python -m interp.probe",
        report=_report,
        aliases={"--layer": "layers"},
    )


if __name__ == "__main__":
    raise SystemExit(main())
