"""``python -m interp.probe.matrix``: the cross-dataset probe matrix (options: the fields of
:class:`interp.probe.matrix.MatrixConfig`; ``--help`` lists them)."""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.probe.matrix.config import MatrixConfig


def _report(config: MatrixConfig, run) -> str:
    from interp.probe.matrix.report import format_table

    return f"{format_table(run)}\n\nSaved the table, cells, config and figure to {run.out_dir}"


def _run(config: MatrixConfig):
    from interp.probe.matrix.run import run_matrix

    return run_matrix(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        MatrixConfig,
        _run,
        argv,
        prog="python -m interp.probe.matrix",
        report=_report,
        aliases={"--layer": "layers"},
    )


if __name__ == "__main__":
    raise SystemExit(main())
