"""``python -m interp.probe --layer 14``: train and evaluate a divergence probe.

All options are the fields of :class:`interp.config.ProbeConfig` (``--help`` lists them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from interp.cli import config_from_args, parser_for
from interp.config import ProbeConfig


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for(ProbeConfig, prog="python -m interp.probe", aliases={"--layer": "layers"})
    args = parser.parse_args(argv)
    from interp.report import format_table
    from interp.train import train_probe

    try:
        config = config_from_args(ProbeConfig, args)
        run = train_probe(config)
    except (ValueError, FileNotFoundError) as err:
        # Bad input (unknown model, malformed JSONL line, layer out of range, ...): say what
        # is wrong without a traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(run))
    print(f"\nSaved probes, metrics, config and figure to {run.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
