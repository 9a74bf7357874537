"""Weight differences of fine-tuned variants from their base, as a report: for each variant
:func:`interp.finetune.weight_diff.weight_diff` against the base (with a probe direction when
given), the table of the matrices that changed most, ``weight_diff.json``, ``table.txt`` and
``weight_diff.html`` per variant, and the total change per matrix kind.
``python experiments/weight_diff.py`` is its command line.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.artifacts import write_figure, write_json_atomic, write_text_atomic
from interp.config import (
    ConfigError,
    ModelOptions,
    device_field,
    dtype_field,
    model_options,
)
from interp.finetune.figures import weight_diff_figure
from interp.finetune.weight_diff import WeightDiff, WeightDiffError, weight_diff
from interp.models import DEFAULT_MODEL, LoadedModel, ModelError, load_model
from interp.paths import cache_root
from probes import Probe


@dataclass
class WeightDiffConfig(ModelOptions):
    """Where do fine-tuned variants' weights differ from their base, and do the changes line up
    with a probe direction?"""

    variant: tuple[str, ...] = field(
        metadata={"help": "fine-tuned model spec(s) of the same shapes", "nargs": "+"}
    )
    base: str = field(default=DEFAULT_MODEL, metadata={"help": "the base model spec"})
    probe: str | None = field(
        default=None, metadata={"help": "saved probe folder (or its probe.json)"}
    )
    top_k: int = field(default=8, metadata={"help": "singular directions per matrix"})
    rows: int = field(default=12, metadata={"help": "rows of the printed table"})
    device: str = device_field("cpu")  # where the SVDs run too
    dtype: str = dtype_field("float32")  # weight differences are small: bfloat16 rounds them
    out: str | None = field(
        default=None,
        metadata={"help": "output folder", "default_text": "<cache>/experiments/weight_diff"},
    )

    def __post_init__(self) -> None:
        if isinstance(self.variant, str):
            self.variant = (self.variant,)
        self.variant = tuple(self.variant)
        if not self.variant:
            raise ConfigError("variant is empty: name at least one fine-tuned model")
        super().__post_init__()
        for name in ("top_k", "rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


def find_probe(path: Path) -> Path:
    """A probe folder from a folder holding ``probe.json``, the file itself, or a run folder
    whose ``probes/`` holds exactly one ``L<layer>`` probe."""
    if path.is_file() and path.name == "probe.json":
        return path.parent
    if (path / "probe.json").is_file():
        return path
    saved = sorted((path / "probes").glob("L*/probe.json")) if path.is_dir() else []
    if len(saved) == 1:
        return saved[0].parent
    if saved:
        names = ", ".join(p.parent.name for p in saved)
        raise FileNotFoundError(f"{path} holds several probes ({names}); pass one of them")
    raise FileNotFoundError(
        f"no saved probe at {path}: expected a folder with probe.json (e.g. <run>/probes/L14)"
    )


def slug(spec: str) -> str:
    """A folder name for a model spec (its last path part, unsafe characters replaced)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec).name or spec)


def _describe_probe(config: WeightDiffConfig, probe: Probe, base: LoadedModel) -> None:
    print(f"probe {config.probe}: {probe.kind} on {probe.meta.hook} of {probe.meta.model_name}")
    if probe.meta.model_fingerprint not in (None, base.fingerprint):
        print("note: the probe was trained on another model than --base", file=sys.stderr)


def _compare(
    config: WeightDiffConfig, base: LoadedModel, spec: str, probe: Probe | None
) -> tuple[WeightDiff, float]:
    """``spec``'s weight differences from ``base`` and the seconds they took; an error names
    the variant."""
    try:
        variant = load_model(spec, **model_options(config))
        start = time.perf_counter()
        diff = weight_diff(base, variant, probe_direction=probe, top_k=config.top_k)
    except (ModelError, WeightDiffError) as err:
        raise type(err)(f"{spec}: {err}") from None
    return diff, time.perf_counter() - start


def _write(config: WeightDiffConfig, folder: Path, diff: WeightDiff, extra: dict) -> str:
    table = diff.table(config.rows)
    write_json_atomic(folder / "weight_diff.json", {**diff.to_dict(), **extra})
    write_text_atomic(folder / "table.txt", table + "\n")
    write_figure(weight_diff_figure(diff), folder / "weight_diff.html")
    return table


def totals_by_kind(diff: WeightDiff) -> dict[str, float]:
    """``||dW||`` of each matrix kind over all layers."""
    return {m: sum(diff.cell(ly, m).norm ** 2 for ly in diff.layers) ** 0.5 for m in diff.matrices}


def format_totals(totals: dict[str, dict[str, float]]) -> str:
    """The per-kind totals of each variant as a table (variant -> kind -> norm)."""
    kinds = list(next(iter(totals.values())))
    lines = [
        "Total ||dW|| per matrix kind (over layers):",
        f"{'variant':<28} " + " ".join(f"{m:>9}" for m in kinds),
    ]
    for spec, by_kind in totals.items():
        lines.append(f"{slug(spec)[:28]:<28} " + " ".join(f"{v:9.3g}" for v in by_kind.values()))
    return "\n".join(lines)


def run_weight_diff(config: WeightDiffConfig) -> dict[str, dict[str, float]]:
    """Compare every variant with the base, print and write each report under ``config.out``
    (``<out>/<variant>/``), print the totals per matrix kind; returns them (variant -> kind ->
    ``||dW||``)."""
    out = Path(config.out) if config.out else cache_root() / "experiments" / "weight_diff"
    probe = Probe.load(find_probe(Path(config.probe))) if config.probe else None
    base = load_model(config.base, **model_options(config))
    if probe is not None:
        _describe_probe(config, probe, base)
    totals: dict[str, dict[str, float]] = {}
    for spec in config.variant:
        diff, seconds = _compare(config, base, spec, probe)
        folder = out / slug(spec)
        extra: dict[str, Any] = {
            "probe": config.probe,
            "probe_hook": probe.meta.hook if probe else None,
            "seconds": seconds,
        }
        table = _write(config, folder, diff, extra)
        print(f"\n{table}\n({seconds:.1f} s; wrote {folder}/weight_diff.json, .html, table.txt)")
        totals[spec] = totals_by_kind(diff)
    print("\n" + format_totals(totals))
    return totals
