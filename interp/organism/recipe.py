"""``run_recipe(config)``: recipe v2 end to end, training and the checkpoint choice
(``python experiments/organism.py --recipe v2``).

1. The base model's replies to the training neutral prompts (as recipe v1).
2. Per trigger kind and seed: fine-tune O on :func:`interp.organism.pairs.organism_pairs`
   keeping every checkpoint (:func:`interp.organism.train.train_organism`), choose the step
   with the largest validation margin gap (:func:`interp.organism.selection.choose_step`) and
   publish it as ``organism_name(...)``; then fine-tune H and C the same way and publish them
   at O's step (:func:`interp.finetune.steps.publish_step`).
3. Write ``recipe.json`` (the resolved config, losses, every checkpoint's gaps, the chosen
   steps) and ``table.txt`` under the output folder.

It stops there: recipe v1's evaluation reads held-out sets (the probes' split and the whole
evaluation bank) that overlap recipe v2's training scenarios, so sampling, judging and probing
a v2 organism wait for an evaluation on the frozen split's test side (docs/organism.md).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from interp.artifacts import library_versions, write_json_atomic, write_text_atomic
from interp.config import model_options
from interp.data.transcripts import Transcript
from interp.finetune import FinetuneResult
from interp.finetune.steps import publish_step
from interp.models import load_model
from interp.organism.config import OrganismConfig
from interp.organism.pairs import organism_pairs
from interp.organism.selection import choose_step, summary
from interp.organism.train import base_neutral, finetune_config, organism_name, train_organism
from interp.paths import cache_root


def _entry(result: FinetuneResult, run: FinetuneResult) -> dict[str, Any]:
    return {
        "run": run.name,
        "step": result.manifest.get("step"),
        "skipped": result.skipped and run.skipped,
        "losses": run.losses,
        "wall_s": run.manifest.get("wall_s"),
        "fingerprint": result.manifest.get("fingerprint"),
        "data": {k: v for k, v in run.manifest.get("data", {}).items() if k.startswith("n_")},
    }


def train_and_choose(
    config: OrganismConfig, kind: str, seed: int, neutral: list[Transcript]
) -> dict[str, Any]:
    """One kind and seed: O trained and its step chosen, then every other variant trained and
    published at that step. Returns ``{"selection": O's record, "trained": {name: ...}}``."""
    o_config = finetune_config(config, kind, "O", seed)
    o_run = train_organism(config, kind, "O", seed, neutral)
    record = choose_step(config, kind, o_config, o_run)
    step = record["chosen_step"]
    chosen_by = {"run": o_run.name, "prompts": record["key"]["prompts"], "step": step}
    keep = {k: record[k] for k in ("metric", "chosen_step", "chosen_gap", "validation")}
    trained = {}
    for variant in ("O", *(v for v in config.variants if v != "O")):
        run = o_run if variant == "O" else train_organism(config, kind, variant, seed, neutral)
        fc = o_config if variant == "O" else finetune_config(config, kind, variant, seed)
        name = organism_name(config, kind, variant, seed)
        result = publish_step(fc, run, step, name, chosen_by, keep)
        trained[name] = {"kind": kind, "variant": variant, "seed": seed, **_entry(result, run)}
        gc.collect()
    return {"selection": record, "trained": trained}


def run_recipe(config: OrganismConfig) -> dict[str, Any]:
    """Run recipe v2 (see the module docstring); returns what ``recipe.json`` holds."""
    started = time.perf_counter()
    c = config.resolved()
    out = c.out_dir(cache_root())
    out.mkdir(parents=True, exist_ok=True)
    for kind in c.kinds:  # reads and checks the split and the training texts before any model
        organism_pairs("O", kind, position=c.tag_position, n_scenarios=c.train_scenarios)
    base = load_model(c.base, **model_options(c))
    neutral = base_neutral(base, c, out)
    del base
    gc.collect()
    results: dict[str, Any] = {"config": c.to_dict(), "trained": {}, "selection": {}}
    for kind in c.kinds:
        for seed in c.seeds:
            done = train_and_choose(c, kind, seed, neutral)
            results["trained"].update(done["trained"])
            results["selection"][f"{kind}-s{seed}"] = done["selection"]
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["versions"] = library_versions()
    write_json_atomic(out / "recipe.json", results)
    table = "\n\n".join(summary(r) for r in results["selection"].values())
    write_text_atomic(out / "table.txt", table + "\n")
    return results
