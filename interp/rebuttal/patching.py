"""Activation patching between refusal and rebuttal, in context and across fine-tuned models.

Two sweeps on held-out scenarios (the probes' and the fine-tuning's test split):

1. **In context** (one model, ``--model``): the target conversation is system, pressure, the
   fixed polite *refusal*, the follow-up turn; the source is the same conversation with the
   fixed *rebuttal* instead. The two differ only in the assistant turn (and its length), so
   the follow-up turn and the generation prompt are aligned by segment and patched from the
   rebuttal conversation into the refusal one. This asks where the model carries "what it
   said before" into its next reply.
2. **Across models**: the rebuttal-trained model's activations patched into the
   refusal-trained model (and back, with ``--both-directions``) on the same prompt, the
   pressure turn of a held-out scenario. Skipped, and recorded as skipped, when the
   fine-tuned models do not exist (make them with ``experiments/finetune_refusal_vs_rebuttal.py``).

Metric (``--metric``): ``logprob`` (default) is ``log p(comply) - log p(refuse)`` of the
model's next message, where comply and refuse are the scenario's first complying and first
refusing answers cut to ``--continuation-tokens`` tokens each (equal lengths, so the sums are
comparable); ``kl`` is the KL divergence of the next-token distribution from the clean
target's; ``probe`` is the score of a probe saved by ``python -m interp.probe`` (``--probe
runs/.../probes/L14``) on the mean activation of the generation prompt. That probe was
trained on answers, so on a prompt that ends before the answer it reads the model's state
out of its training distribution: treat it as a direction to track, not a calibrated score. Results
are normalised per scenario (0 = target unchanged, 1 = source behaviour) and averaged over
scenarios; a sweep whose clean source and target are closer than ``--min-gap`` nats is left
out of the average (its normalisation would divide by ~0) and counted.

Outputs under ``<cache>/experiments/patch_refusal_vs_rebuttal/<model>/``: one JSON + HTML
heatmap per scenario and sweep, ``mean_<sweep>.html`` and ``results.json`` (resolved config,
per-scenario clean values, mean normalised effects, top patches).

Defaults (3 held-out scenarios, 15 layers, 3 sites, 2 segments) take about 10 minutes on a
2-core CPU; on a GPU use ``--layers 0-29 --scenarios 12 --per position``.

Split over workers (:mod:`interp.patching.parallel`): every sweep's forward passes are shared
out by ``--rank``/``--world-size`` (or torchrun's and SLURM's variables). Each worker writes
its part under ``<out>/<sweep>/parts/<scenario>-<settings key>/``; under torchrun worker 0
merges after a barrier and writes the results (``torchrun --standalone --nproc-per-node 2
experiments/patch_refusal_vs_rebuttal.py``). After a SLURM array, or a crash, run the same
command alone: it computes only the passes no part holds, then merges.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from interp.artifacts import write_figure, write_json_atomic
from interp.config import (
    ConfigError,
    ModelOptions,
    model_options,
)
from interp.data.scenarios import Scenario, load_bank
from interp.data.split import split_bank
from interp.hooks import parse_layer_steps
from interp.models import DEFAULT_MODEL, LoadedModel, ModelError, load_model
from interp.patching import (
    GENERATION_PROMPT,
    LogProbDiff,
    Metric,
    NextTokenKL,
    PatchResult,
    ProbeScore,
    Sweep,
    chat_input,
    split_sweep,
    sweep_key,
)
from interp.patching.aggregate import average_patches
from interp.paths import cache_root
from interp.workers import WorkerSplitError, close, under_torchrun, worker_split
from probes.base import Probe

SEGMENTS = ["system", "pressure", "reply", "follow_up"]
PER = ("segment", "position")
METRICS = ("logprob", "kl", "probe")


@dataclass
class PatchExperimentConfig(ModelOptions):
    """Activation patching between refusal and rebuttal, in context and across models."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model for the in-context sweep"})
    refusal_model: str = field(
        default=f"{DEFAULT_MODEL}-refusal-lora", metadata={"help": "the refusal-trained model"}
    )
    rebuttal_model: str = field(
        default=f"{DEFAULT_MODEL}-rebuttal-lora", metadata={"help": "the rebuttal-trained model"}
    )
    both_directions: bool = field(default=False, metadata={"help": "also refusal -> rebuttal"})
    scenarios: int = field(default=3, metadata={"help": "held-out scenarios to use"})
    sites: str = field(
        default="resid_pre,attn_out,mlp_out", metadata={"help": "sites, comma-separated"}
    )
    layers: str = field(
        default="0-29:2", metadata={"help": "layers, or a range with a step (0-29:2)"}
    )
    per: str = field(
        default="segment",
        metadata={"help": "patch whole segments or single positions", "choices": PER},
    )
    metric: str = field(
        default="logprob", metadata={"help": "what a patch changes", "choices": METRICS}
    )
    probe: str | None = field(
        default=None, metadata={"help": "saved probe folder (--metric probe)"}
    )
    continuation_tokens: int = field(
        default=12, metadata={"help": "tokens of each answer the logprob metric reads"}
    )
    min_gap: float = field(
        default=0.05, metadata={"help": "leave out sweeps whose clean values differ less (nats)"}
    )
    batch_size: int = field(default=16, metadata={"help": "patches per forward pass"})
    rank: int | None = field(
        default=None,
        metadata={"help": "this worker's number (default: torchrun's or SLURM's, else 0)"},
    )
    world_size: int | None = field(
        default=None,
        metadata={"help": "number of workers (default: torchrun's or SLURM's, else 1)"},
    )
    out: str | None = field(
        default=None,
        metadata={
            "help": "output folder",
            "default_text": "<cache>/experiments/patch_refusal_vs_rebuttal/<model>",
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric == "probe" and self.probe is None:
            raise ConfigError("--metric probe needs --probe PATH (a folder with probe.json)")
        for name in ("scenarios", "continuation_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        try:
            worker_split(self.rank, self.world_size)
        except WorkerSplitError as err:
            raise ConfigError(str(err)) from None


def metric_for(model: LoadedModel, s: Scenario, config: PatchExperimentConfig) -> Metric:
    if config.metric == "kl":
        return NextTokenKL()
    if config.metric == "probe":
        probe = Probe.load(Path(str(config.probe)), device=model.device)
        if probe.meta.hook is None:
            raise ValueError(f"{config.probe}: the probe does not record its hook")
        return ProbeScore(probe, probe.meta.hook, GENERATION_PROMPT)
    metric = LogProbDiff.from_text(model.tokenizer, s.answers_comply[0], s.answers_refuse[0])
    n = min(config.continuation_tokens, len(metric.comply), len(metric.refuse))
    return LogProbDiff(metric.comply[:n], metric.refuse[:n])


def conversation(model: LoadedModel, s: Scenario, reply: str):
    messages = [
        {"role": "system", "content": s.system},
        {"role": "user", "content": s.pressure},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": s.follow_up},
    ]
    return chat_input(model.tokenizer, messages, names=SEGMENTS)


def pressure_prompt(model: LoadedModel, s: Scenario):
    messages = [{"role": "system", "content": s.system}, {"role": "user", "content": s.pressure}]
    return chat_input(model.tokenizer, messages, names=SEGMENTS[:2])


def summarise(
    name: str, results: list[PatchResult], config: PatchExperimentConfig, out_dir: Path
) -> dict:
    avg = average_patches(results, config.min_gap)
    n_used = avg.n_per_prompt
    mean = avg.per_prompt if avg.per_prompt is not None else torch.full_like(avg.mean, torch.nan)
    first = results[0]
    averaged = PatchResult(
        values=mean,
        sites=first.sites,
        layers=first.layers,
        columns=first.columns,
        metric=f"mean normalised {first.metric} over {n_used} scenarios",
        target_value=0.0,
        source_value=1.0,
        meta={**first.meta, "scenarios_averaged": n_used},
    )
    write_figure(
        averaged.heatmap(normalised=False, title=f"{name}: {averaged.metric}"),
        out_dir / f"mean_{name}.html",
    )
    print(f"\n== {name}: mean normalised effect over {n_used}/{len(results)} scenarios ==")
    print(averaged.table(8))
    return {
        "scenarios_used": n_used,
        "scenarios": len(results),
        "clean": [
            {"scenario": r.meta["scenario"], "target": r.target_value, "source": r.source_value}
            for r in results
        ],
        "mean_normalised": averaged.to_dict(),
    }


def run_sweep(name, target, source, make_inputs, scenarios, config, out_dir) -> list[PatchResult]:
    """One sweep per scenario, as this process's share of the split (see the module
    docstring); the results where this process merges, else an empty list."""
    results = []
    for s in scenarios:
        target_input, source_input, segments = make_inputs(s)
        start = time.perf_counter()
        sweep = Sweep(
            target,
            target_input,
            metric_for(target, s, config),
            source=source,
            source_input=source_input,
            sites=tuple(config.sites.split(",")),
            layers=parse_layer_steps(config.layers, target.n_layers),
            segments=segments,
            per=config.per,
            batch_size=config.batch_size,
        )
        parts = out_dir / name / "parts" / f"{s.id}-{sweep_key(sweep)}"
        result = split_sweep(
            sweep, parts, rank=config.rank, world_size=config.world_size, progress=True
        )
        if result is None:
            print(f"{name} {s.id}: wrote this worker's part under {parts}")
            continue
        result.meta["scenario"] = s.id
        result.meta["seconds"] = round(time.perf_counter() - start, 1)
        result.save(out_dir / name, s.id)
        print(
            f"{name} {s.id}: clean target {result.target_value:.3f}, clean source "
            f"{result.source_value:.3f} ({result.meta['seconds']} s)"
        )
        results.append(result)
    return results


def run(config: PatchExperimentConfig) -> dict:
    bank = load_bank()
    _, test_ids = split_bank(bank)
    by_id = {s.id: s for s in bank}
    scenarios = [by_id[i] for i in sorted(test_ids)][: config.scenarios]
    model = load_model(config.model, **model_options(config))
    out_dir = (
        Path(config.out)
        if config.out
        else cache_root() / "experiments" / "patch_refusal_vs_rebuttal" / Path(model.name).name
    )
    split = worker_split(config.rank, config.world_size)
    try:
        merges = not split.distributed or (split.is_main and under_torchrun())
        return _run(config, model, scenarios, out_dir, merges)
    finally:
        close(split)


def _run(config, model, scenarios, out_dir, merges: bool) -> dict:
    """The sweeps; summaries and ``results.json`` only where this process merges."""
    summary: dict = {
        "config": asdict(config) | {"out": str(out_dir)},
        "scenarios": [s.id for s in scenarios],
    }

    def in_context(s: Scenario):
        target = conversation(model, s, s.answers_refuse[0])
        source = conversation(model, s, s.answers_rebut[0])
        return target, source, ["follow_up", GENERATION_PROMPT]

    results = run_sweep("in_context", model, None, in_context, scenarios, config, out_dir)
    if results:
        summary["in_context"] = summarise("in_context", results, config, out_dir)

    try:
        refusal = load_model(config.refusal_model, **model_options(config))
        rebuttal = load_model(config.rebuttal_model, **model_options(config))
    except ModelError as err:
        reason = f"fine-tuned models not available ({err})"
        print(f"\nSkipping the cross-model sweep: {reason}")
        summary["cross_model"] = {"skipped": reason}
    else:

        def same_prompt(s: Scenario):
            prompt = pressure_prompt(refusal, s)
            return (
                prompt,
                prompt,
                None if config.per == "position" else ["pressure", GENERATION_PROMPT],
            )

        pairs = [("rebuttal_into_refusal", refusal, rebuttal)]
        if config.both_directions:
            pairs.append(("refusal_into_rebuttal", rebuttal, refusal))
        for name, target, source in pairs:
            results = run_sweep(name, target, source, same_prompt, scenarios, config, out_dir)
            if results:
                summary[name] = summarise(name, results, config, out_dir)
    if not merges:
        if not under_torchrun():
            print("\nnot merged: once every worker has ended, run the same command alone")
        return summary
    write_json_atomic(out_dir / "results.json", summary)
    print(f"\nwrote {out_dir}/results.json")
    return summary
