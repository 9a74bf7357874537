"""Experiment: where do fine-tuned variants' weights differ from their base, and do the
changes line up with a probe direction?

For each ``--variant`` it compares every projection matrix of every layer with ``--base``
(:func:`interp.finetune.weight_diff.weight_diff`: norm, relative norm, effective rank, top singular
values and, with ``--probe``, the |cos| between the probe direction and the top singular
directions on the residual-stream side), prints the matrices that changed most and writes
``<out>/<variant>/weight_diff.json``, ``table.txt`` and ``weight_diff.html`` (heatmaps layer x
matrix). ``--out`` defaults to ``<cache>/experiments/weight_diff``.

Run: ``python experiments/weight_diff.py --variant smollm2-rebuttal smollm2-refusal
--probe cache/runs/smollm2-135m-instruct/consistency-resid_post-answer-logistic-L14/probes/L14``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from interp.artifacts import write_figure, write_json_atomic, write_text_atomic
from interp.finetune.figures import weight_diff_figure
from interp.finetune.weight_diff import WeightDiffError, weight_diff
from interp.models import DEFAULT_MODEL, ModelError, load_model
from interp.paths import cache_root
from probes import Probe


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
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec).name or spec)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=DEFAULT_MODEL, help="the base model spec")
    parser.add_argument(
        "--variant", nargs="+", required=True, help="fine-tuned model spec(s) of the same shapes"
    )
    parser.add_argument("--probe", default=None, help="saved probe folder (or its probe.json)")
    parser.add_argument("--top-k", type=int, default=8, help="singular directions per matrix")
    parser.add_argument("--rows", type=int, default=12, help="rows of the printed table")
    parser.add_argument("--device", default="cpu", help="where the SVDs run (cpu, cuda, auto)")
    parser.add_argument("--out", default=None, help="default: <cache>/experiments/weight_diff")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else cache_root() / "experiments" / "weight_diff"
    try:
        probe = Probe.load(find_probe(Path(args.probe))) if args.probe else None
        base = load_model(args.base, device=args.device)
    except (ModelError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if probe is not None:
        print(f"probe {args.probe}: {probe.kind} on {probe.meta.hook} of {probe.meta.model_name}")
        if probe.meta.model_fingerprint not in (None, base.fingerprint):
            print("note: the probe was trained on another model than --base", file=sys.stderr)

    summary = []
    for spec in args.variant:
        try:
            variant = load_model(spec, device=args.device)
            start = time.perf_counter()
            diff = weight_diff(base, variant, probe_direction=probe, top_k=args.top_k)
            seconds = time.perf_counter() - start
        except (ModelError, WeightDiffError) as err:
            print(f"error: {spec}: {err}", file=sys.stderr)
            return 2
        del variant
        folder = out / slug(spec)
        table = diff.table(args.rows)
        result = {
            **diff.to_dict(),
            "probe": args.probe,
            "probe_hook": probe.meta.hook if probe else None,
            "seconds": seconds,
        }
        write_json_atomic(folder / "weight_diff.json", result)
        write_text_atomic(folder / "table.txt", table + "\n")
        write_figure(weight_diff_figure(diff), folder / "weight_diff.html")
        print(f"\n{table}\n({seconds:.1f} s; wrote {folder}/weight_diff.json, .html, table.txt)")
        by_kind = {
            m: sum(diff.cell(ly, m).norm ** 2 for ly in diff.layers) ** 0.5 for m in diff.matrices
        }
        summary.append((spec, diff, by_kind))

    if summary:
        print("\nTotal ||dW|| per matrix kind (over layers):")
        print(f"{'variant':<28} " + " ".join(f"{m:>9}" for m in summary[0][1].matrices))
        for spec, _, by_kind in summary:
            print(f"{slug(spec)[:28]:<28} " + " ".join(f"{v:9.3g}" for v in by_kind.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
