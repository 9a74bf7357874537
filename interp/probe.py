"""``python -m interp.probe --layer 14``: train and evaluate a divergence probe.

All options are the fields of :class:`interp.config.ProbeConfig` (``--help`` lists them).
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.config import ProbeConfig


def _report(config: ProbeConfig, run) -> str:
    from interp.report import format_table

    return f"{format_table(run)}\n\nSaved probes, metrics, config and figure to {run.out_dir}"


def _train(config: ProbeConfig):
    from interp.train import train_probe  # imports torch and the model stack: not at import

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
