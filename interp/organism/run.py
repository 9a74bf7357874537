"""``run_organism(config)``: the organism experiment end to end (``experiments/organism.py``).

1. The base model's replies to the training neutral prompts (mixed into every variant).
2. Fine-tune O, H and C per trigger kind and seed (:mod:`interp.organism.train`; reused
   when already trained with the same settings).
3. Sample every variant on the held-out prompts, trigger on and off; judge the samples
   with the rule judge; rates with Wilson intervals (:mod:`interp.organism.measure`).
4. Probe O's own generations, every seed (:mod:`interp.organism.analysis`; the first seed's
   models are kept from sampling, the others loaded one seed at a time).
5. Write ``results.json``, ``table.txt`` and the figures under the output folder.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from interp.artifacts import library_versions, write_json_atomic, write_text_atomic
from interp.config import model_options
from interp.data.transcripts import Transcript
from interp.models import LoadedModel, load_model
from interp.organism.config import OrganismConfig
from interp.organism.measure import (
    condition_rates,
    hand_labelled,
    judge_samples,
    rate_dict,
    read_hand_labels,
)
from interp.organism.sample import eval_prompts, sample_variant
from interp.organism.train import base_neutral, organism_name, train_organism
from interp.paths import cache_root


def _counts(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.get("data", {}).items() if k.startswith("n_")}


def _train_all(config: OrganismConfig, neutral: list[Transcript]) -> dict[str, Any]:
    out = {}
    for kind in config.kinds:
        for seed in config.seeds:
            for variant in config.variants:
                result = train_organism(config, kind, variant, seed, neutral)
                out[result.name] = {
                    "kind": kind,
                    "variant": variant,
                    "seed": seed,
                    "skipped": result.skipped,
                    "losses": result.losses,
                    "wall_s": result.manifest.get("wall_s"),
                    "fingerprint": result.manifest.get("fingerprint"),
                    "data": _counts(result.manifest),
                }
    return out


def _sample_all(
    config: OrganismConfig, out: Path, keep: set[str]
) -> tuple[dict[str, list[Transcript]], dict[str, LoadedModel]]:
    """Raw (unjudged) samples of every trained variant (by model name), and the loaded models
    named in ``keep`` (the ones the probes read)."""
    samples, models = {}, {}
    for kind in config.kinds:
        prompts = eval_prompts(
            kind,
            config.test_fraction,
            config.split_seed,
            config.n_neutral_eval,
            eval_scenarios=config.eval_scenarios,
        )
        for seed in config.seeds:
            for variant in config.variants:
                name = organism_name(config, kind, variant, seed)
                model = load_model(name, **model_options(config))
                raw = sample_variant(model, prompts, config, out / "samples" / f"{name}.jsonl")
                samples[name] = raw
                if name in keep:
                    models[name] = model
                del model
                gc.collect()
    return samples, models


def _rates(
    config: OrganismConfig, rule: dict[str, list[Transcript]], judged: dict[str, list[Transcript]]
) -> dict[str, Any]:
    """Per model, the rule judge's rates on every sample and, with ``config.labels``, the
    rates of the hand-labelled samples by their hand labels (``hand_rates``)."""
    out: dict[str, Any] = {}
    for kind in config.kinds:
        for seed in config.seeds:
            for variant in config.variants:
                name = organism_name(config, kind, variant, seed)
                out[name] = {
                    "kind": kind,
                    "variant": variant,
                    "seed": seed,
                    "rates": _rate_dicts(rule[name]),
                }
                hand = hand_labelled(judged[name])
                if hand:
                    out[name]["hand_rates"] = _rate_dicts(hand)
    return out


def _rate_dicts(samples: list[Transcript]) -> dict[str, Any]:
    return {
        cond: {k: rate_dict(r) for k, r in values.items()}
        for cond, values in condition_rates(samples).items()
    }


def check_inputs(config: OrganismConfig) -> None:
    """Read and check, before the base model loads, every input file the run reads later:
    the hand labels (``--labels``), the scenario bank the judge reads and each trigger kind's
    held-out prompts (the eval bank's included), so a bad file fails in seconds instead of
    after the training and sampling, naming the file and the fix."""
    from interp.data.eval_bank import organism_scenarios

    if config.labels:
        read_hand_labels(config.labels)
    organism_scenarios()
    for kind in config.kinds:
        eval_prompts(
            kind,
            config.test_fraction,
            config.split_seed,
            config.n_neutral_eval,
            eval_scenarios=config.eval_scenarios,
        )


def run_organism(config: OrganismConfig) -> dict[str, Any]:
    """Run the experiment; returns what ``results.json`` holds. Recipe v2 trains and chooses
    checkpoints only (:func:`interp.organism.recipe.run_recipe`)."""
    if config.recipe == "v2":
        from interp.organism.recipe import run_recipe

        return run_recipe(config)
    from interp.organism.analysis import analyse_seeds
    from interp.organism.causal import causal_step
    from interp.organism.controls import seed_spread
    from interp.organism.report import write_report

    started = time.perf_counter()
    c = config.resolved()
    check_inputs(c)
    root = cache_root()
    out = c.out_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    base = load_model(c.base, **model_options(c))
    neutral = base_neutral(base, c, out)
    trained = _train_all(c, neutral)
    first = c.seeds[0]
    keep = {organism_name(c, k, v, first) for k in c.kinds for v in ("O", "H")}
    raw, models = _sample_all(c, out, keep)
    # the probes read hand labels where they exist (the rule judge elsewhere)
    rule = {name: judge_samples(rows) for name, rows in raw.items()}
    samples = (
        {name: judge_samples(rows, c.labels) for name, rows in raw.items()} if c.labels else rule
    )
    results: dict[str, Any] = {
        "config": c.to_dict(),
        "trained": trained,
        "rates": _rates(c, rule, samples),
        "neutral_mixin": len(neutral),
        "hand_labelled": {name: len(hand_labelled(rows)) for name, rows in samples.items()},
    }
    # parts 3 and 5: probes and their controls for every seed
    analysis, o_probes = analyse_seeds(c, base, models, samples, out)
    results.update(analysis)
    # part 4: patching and steering with O's probe directions, first seed
    results["causal"] = causal_step(c, models, o_probes, out)
    results["seed_spread"] = seed_spread(results)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["versions"] = library_versions()
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "table.txt", write_report(results, out) + "\n")
    return results
