"""Write the organism's frozen train / validation / test split of pressure scenarios.

Run once, before any recipe work: ``python experiments/freeze_organism_split.py``. It writes
``interp/data/splits/organism.json`` (committed); a rerun with the same banks leaves it
unchanged, and a rerun that would move a scenario between sides is refused. The logic is
:mod:`interp.data.splits`.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.cli import run_cli
from interp.data.splits import FreezeSplitConfig, freeze_organism_split


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        FreezeSplitConfig,
        freeze_organism_split,
        argv,
        prog="python experiments/freeze_organism_split.py",
        report=lambda _config, path: f"wrote {path}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
