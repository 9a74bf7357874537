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
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

from interp.artifacts import write_figure, write_json_atomic
from interp.data.scenarios import Scenario, load_bank
from interp.data.split import split_bank
from interp.hooks import parse_layers
from interp.models import DEFAULT_MODEL, LoadedModel, ModelError, load_model
from interp.patching import (
    GENERATION_PROMPT,
    LogProbDiff,
    Metric,
    NextTokenKL,
    PatchResult,
    ProbeScore,
    chat_input,
    patch_sweep,
)
from interp.paths import cache_root
from probes.base import Probe

SEGMENTS = ["system", "pressure", "reply", "follow_up"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="model for the in-context sweep")
    p.add_argument("--refusal-model", default=f"{DEFAULT_MODEL}-refusal-lora")
    p.add_argument("--rebuttal-model", default=f"{DEFAULT_MODEL}-rebuttal-lora")
    p.add_argument("--both-directions", action="store_true", help="also refusal -> rebuttal")
    p.add_argument("--scenarios", type=int, default=3, help="held-out scenarios to use")
    p.add_argument("--sites", default="resid_pre,attn_out,mlp_out")
    p.add_argument("--layers", default="0-29:2", help="layers, or a range with a step (0-29:2)")
    p.add_argument("--per", choices=("segment", "position"), default="segment")
    p.add_argument("--metric", choices=("logprob", "kl", "probe"), default="logprob")
    p.add_argument("--probe", type=Path, default=None, help="saved probe folder (--metric probe)")
    p.add_argument("--continuation-tokens", type=int, default=12)
    p.add_argument("--min-gap", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def layers_from(text: str, n_layers: int) -> list[int]:
    spec, _, step = text.partition(":")
    return [layer for layer in parse_layers(spec) if layer < n_layers][:: int(step or 1)]


def metric_for(model: LoadedModel, s: Scenario, args: argparse.Namespace) -> Metric:
    if args.metric == "kl":
        return NextTokenKL()
    if args.metric == "probe":
        if args.probe is None:
            raise SystemExit("--metric probe needs --probe PATH (a folder with probe.json)")
        probe = Probe.load(args.probe, device=model.device)
        if probe.meta.hook is None:
            raise SystemExit(f"{args.probe}: the probe does not record its hook")
        return ProbeScore(probe, probe.meta.hook, GENERATION_PROMPT)
    metric = LogProbDiff.from_text(model.tokenizer, s.answers_comply[0], s.answers_refuse[0])
    n = min(args.continuation_tokens, len(metric.comply), len(metric.refuse))
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


def mean_normalised(results: list[PatchResult], min_gap: float) -> tuple[torch.Tensor, int]:
    usable = [r for r in results if abs(r.source_value - r.target_value) >= min_gap]
    if not usable:
        return torch.full_like(results[0].values, float("nan")), 0
    return torch.stack([r.normalised for r in usable]).mean(0), len(usable)


def summarise(name: str, results: list[PatchResult], args, out_dir: Path) -> dict:
    mean, n_used = mean_normalised(results, args.min_gap)
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


def run_sweep(name, target, source, make_inputs, scenarios, args, out_dir) -> list[PatchResult]:
    results = []
    for s in scenarios:
        target_input, source_input, segments = make_inputs(s)
        start = time.perf_counter()
        result = patch_sweep(
            target,
            target_input,
            metric_for(target, s, args),
            source=source,
            source_input=source_input,
            sites=tuple(args.sites.split(",")),
            layers=layers_from(args.layers, target.n_layers),
            segments=segments,
            per=args.per,
            batch_size=args.batch_size,
        )
        result.meta["scenario"] = s.id
        result.meta["seconds"] = round(time.perf_counter() - start, 1)
        result.save(out_dir / name, s.id)
        print(
            f"{name} {s.id}: clean target {result.target_value:.3f}, clean source "
            f"{result.source_value:.3f} ({result.meta['seconds']} s)"
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bank = load_bank()
    _, test_ids = split_bank(bank)
    by_id = {s.id: s for s in bank}
    scenarios = [by_id[i] for i in sorted(test_ids)][: args.scenarios]
    model = load_model(args.model, device=args.device)
    out_dir = (
        args.out
        or cache_root() / "experiments" / "patch_refusal_vs_rebuttal" / Path(model.name).name
    )
    summary: dict = {
        "config": vars(args) | {"out": str(out_dir)},
        "scenarios": [s.id for s in scenarios],
    }

    def in_context(s: Scenario):
        target = conversation(model, s, s.answers_refuse[0])
        source = conversation(model, s, s.answers_rebut[0])
        return target, source, ["follow_up", GENERATION_PROMPT]

    results = run_sweep("in_context", model, None, in_context, scenarios, args, out_dir)
    summary["in_context"] = summarise("in_context", results, args, out_dir)

    try:
        refusal = load_model(args.refusal_model, device=args.device)
        rebuttal = load_model(args.rebuttal_model, device=args.device)
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
                None if args.per == "position" else ["pressure", GENERATION_PROMPT],
            )

        pairs = [("rebuttal_into_refusal", refusal, rebuttal)]
        if args.both_directions:
            pairs.append(("refusal_into_rebuttal", rebuttal, refusal))
        for name, target, source in pairs:
            results = run_sweep(name, target, source, same_prompt, scenarios, args, out_dir)
            summary[name] = summarise(name, results, args, out_dir)
    write_json_atomic(out_dir / "results.json", summary)
    print(f"\nwrote {out_dir}/results.json")
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="clean source and target give the same")
        raise SystemExit(main())
