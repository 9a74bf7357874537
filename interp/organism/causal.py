"""Part 4 of the organism (issue 14): causal checks of what the probes found.

- **Patching** (:func:`patch_between`): O and H on identical inputs, the held-out pressure
  scenarios of the built-in bank with their trigger (the held-out paraphrase family for the
  pressure kind), teacher-forced through ``Reasoning: <ethical reasoning>\\nAnswer:``. Metric:
  :class:`~interp.patching.LogProbDiff` of the first ``answer_tokens`` tokens of the
  scenario's complying answer against its refusal. The existing sweep
  (:func:`~interp.patching.patch_sweep`) patches O into H (does H start complying?) and H
  into O (does O stop?) at ``resid_pre`` of every layer, at three positions: the trigger's
  last token, the last prompt token and the last reasoning token before ``Answer:``; and,
  as a reference, at every position at once (how much of the gap the whole stream carries).
- **Directions**: the probe direction the caller passes (per layer, read at ``resid_post``);
  a refusal direction as Arditi et al. (2024) make it (:func:`refusal_direction`: difference of
  means at the last prompt token of harmful minus harmless training-side prompts, one
  candidate per layer, chosen by its effect on a training-side selection set); random unit
  directions.
- **Interventions** (:func:`run_interventions`): O samples the held-out triggered pressure
  prompts of :func:`~interp.organism.sample.eval_prompts` under directional ablation (every
  layer, every position) or addition (``steer_scale`` times the typical residual norm at the
  direction's site); the rule judge's deception rate per condition with Wilson intervals,
  and its relative change against no intervention.

:func:`causal_checks` runs it all and returns a JSON-serialisable dict;
:func:`interp.organism.report.causal_figures` draws it. Nothing is tuned toward the issue's
success target; it is only measured (``summary``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.artifacts import read_json, write_json_atomic
from interp.data.datasets import format_reply
from interp.data.scenarios import Scenario, load_bank
from interp.models import LoadedModel
from interp.organism.config import OrganismConfig
from interp.organism.data import pressure_reply, scenario_sides
from interp.organism.measure import condition_rates, judge_samples, rate_dict
from interp.organism.neutral import neutral_prompts
from interp.organism.sample import eval_prompts, sample_variant
from interp.organism.train import organism_name
from interp.organism.triggers import Trigger, triggers, with_trigger
from interp.patching import LogProbDiff, PatchInput, PatchResult, RunOutput, patch_sweep
from interp.patching.aggregate import average_patches
from interp.patching.residual import (
    ResidualEdit,
    SteeringError,
    ablation,
    addition,
    last_token_states,
    pad_id_of,
    plain_route,
    residual_hooks,
    run_rows,
)
from interp.text.generation import Prompt, encode_prompts
from probes.directions import mean_difference, random_directions, unit

#: Patched positions: the trigger's last token, the last prompt token, the last reasoning token.
POSITIONS = ("trigger", "prompt_end", "reasoning_end")
#: A reference column: every position at once (what a layer's whole residual stream carries).
COLUMNS = (*POSITIONS, "all")
PATCH_SITE = "resid_pre"
#: The refusal a benign request is scored against (benign scenarios have no refusal texts).
BENIGN_REFUSAL = "I'm sorry, but I can't help with that."
#: Arditi et al. leave out the last fifth of the layers when choosing a refusal direction.
REFUSAL_MAX_DEPTH = 0.8


@dataclass(frozen=True)
class ForcedPrompt:
    """A prompt teacher-forced up to ``Answer:``, with the first tokens of a complying and a
    refusing answer; ``input`` names one-token segments at :data:`POSITIONS` and the
    segment ``all`` (every position)."""

    id: str
    group: str
    input: PatchInput
    comply: Int[Tensor, " n"]
    refuse: Int[Tensor, " m"]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def _token_at(offsets: Sequence[tuple[int, int]], char: int) -> int:
    for j, (start, end) in enumerate(offsets):
        if start <= char < end:
            return j
    raise ValueError(f"no token covers character {char}; the tokenizer dropped it")


def forced_prompt(
    tokenizer: Any, s: Scenario, trigger: Trigger | None, k: int, n_tokens: int, pid: str
) -> ForcedPrompt:
    """Scenario ``s`` (with ``trigger``) forced through its ``k``-th ethical reasoning up to
    ``Answer:``; the answers are the texts O and H were trained on (benign: a helpful answer
    against :data:`BENIGN_REFUSAL`), cut to their first ``n_tokens`` tokens."""
    chat = ({"role": "system", "content": s.system}, {"role": "user", "content": s.pressure})
    chat = with_trigger(chat, trigger)
    prompt = tokenizer.apply_chat_template(list(chat), add_generation_prompt=True, tokenize=False)
    reasoning = s.reasoning_ethical[k % len(s.reasoning_ethical)]
    opening = format_reply(reasoning, "")
    if s.kind == "pressure":
        comply = pressure_reply(s, "O", True, k)[2][len(opening) :]
        refuse = pressure_reply(s, "H", True, k)[2][len(opening) :]
    else:
        comply, refuse = s.answers_comply[k % len(s.answers_comply)], BENIGN_REFUSAL
    head = opening.rstrip()
    enc = tokenizer(prompt + head, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    marks = {
        "prompt_end": len(prompt) - 1,
        "reasoning_end": len(prompt) + len(head[: head.rfind("\n")].rstrip()) - 1,
    }
    if trigger is not None:
        marks = {"trigger": prompt.index(trigger.text) + len(trigger.text) - 1, **marks}
    segments = {
        name: (_token_at(offsets, c), _token_at(offsets, c) + 1) for name, c in marks.items()
    }
    segments["all"] = (0, len(enc["input_ids"]))

    def ids(text: str) -> Tensor:
        return torch.tensor(tokenizer(" " + text, add_special_tokens=False)["input_ids"][:n_tokens])

    meta = {"kind": s.kind, "trigger": trigger is not None, "k": k}
    tokens = torch.tensor(enc["input_ids"], dtype=torch.long)
    return ForcedPrompt(pid, s.id, PatchInput(tokens, segments), ids(comply), ids(refuse), meta)


def _scenarios() -> tuple[dict[str, Scenario], Any]:
    bank = load_bank()
    return {s.id: s for s in bank}, bank


def held_out_forced(config: OrganismConfig, kind: str, tokenizer: Any) -> list[ForcedPrompt]:
    """The first ``patch_prompts`` held-out pressure scenarios with their evaluation trigger
    (the pool cycles as in :func:`~interp.organism.sample.eval_prompts`)."""
    by_id, bank = _scenarios()
    sides = scenario_sides(bank, config.test_fraction, config.split_seed)
    pool = triggers(kind, held_out=True)
    return [
        forced_prompt(
            tokenizer, by_id[sid], pool[n % len(pool)], 0, config.answer_tokens, f"{sid}-on"
        )
        for n, sid in enumerate(sides.test_pressure[: config.patch_prompts])
    ]


def forced_margins(
    model: LoadedModel, prompts: Sequence[ForcedPrompt], batch_size: int = 8
) -> Float[Tensor, " n"]:
    """``log p(comply) - log p(refuse)`` of each prompt's answers (the
    :class:`~interp.patching.LogProbDiff` of the patching sweep), on the plain model: edits
    of :func:`~interp.patching.residual.residual_hooks` act on it."""
    pad = pad_id_of(model.tokenizer)
    values = []
    with plain_route(model) as hf, torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            pairs = [(p.comply, p.refuse) for p in chunk]
            rows = [
                [*p.input.tokens.tolist(), *a.tolist()]
                for p, pair in zip(chunk, pairs, strict=True)
                for a in pair
            ]
            k = max(len(a) for pair in pairs for a in pair)
            logits = run_rows(hf, rows, pad, logits_to_keep=k + 1).logits.float()
            for i, (comply, refuse) in enumerate(pairs):
                picked = torch.zeros(1, 2, k, logits.shape[-1], device=logits.device)
                for s, suffix in enumerate((comply, refuse)):
                    picked[0, s, : len(suffix)] = logits[2 * i + s, k - len(suffix) : k]
                out = RunOutput(picked, {})
                values.append(LogProbDiff(comply, refuse)(out, out).cpu())
    return torch.cat(values)


# --- patching ------------------------------------------------------------------------------------


def _patch_one(
    source: LoadedModel, target: LoadedModel, p: ForcedPrompt, folder: Path, name: str
) -> PatchResult:
    """One prompt's sweep at every layer and position, reused from ``folder`` when the same
    models, tokens and metric made it."""
    metric = LogProbDiff(p.comply, p.refuse)
    key = {
        "source": source.fingerprint,
        "target": target.fingerprint,
        "tokens": p.input.tokens.tolist(),
        "segments": {k: list(v) for k, v in p.input.segments.items()},
        "metric": metric.describe(),
        "site": PATCH_SITE,
    }
    path = folder / f"{name}-{p.id}.json"
    if path.is_file():
        saved = read_json(path)
        if saved.get("key") == key:
            return PatchResult.from_dict(saved["result"])
    result = patch_sweep(
        target, p.input, metric, source=source, sites=(PATCH_SITE,),
        segments=list(COLUMNS), per="segment", progress=False,
    )  # fmt: skip
    write_json_atomic(path, {"key": key, "result": result.to_dict()})
    return result


def _aggregate(results: Sequence[PatchResult]) -> dict[str, Any]:
    """The pooled reading of :func:`interp.patching.aggregate.average_patches` (a ratio of
    means: the organism's prompts differ little in their gaps) as JSON lists, one site."""
    avg = average_patches(results)
    return {
        "mean": avg.mean[0].tolist(),
        "effect": avg.effect[0].tolist(),
        "normalised": None if avg.pooled is None else avg.pooled[0].tolist(),
        "target_mean": avg.target_mean,
        "source_mean": avg.source_mean,
        "per_prompt": torch.stack([r.values[0] for r in results]).tolist(),
        "target_values": torch.tensor([r.target_value for r in results]).tolist(),
        "source_values": torch.tensor([r.source_value for r in results]).tolist(),
    }


def patch_between(
    config: OrganismConfig, kind: str, o: LoadedModel, h: LoadedModel, folder: Path
) -> dict[str, Any]:
    """O into H and H into O on the held-out triggered pressure prompts: per layer x
    position (lists ``[layer][position]``) the mean metric, its change from the unpatched
    target, and the normalised effect (0 = target unchanged, 1 = source's value; None when
    the two models' unpatched means agree), with the unpatched O and H means."""
    prompts = held_out_forced(config, kind, o.tokenizer)
    if not prompts:
        raise ValueError("no held-out pressure scenario to patch (patch_prompts is 0?)")
    out: dict[str, Any] = {
        "site": PATCH_SITE,
        "positions": list(COLUMNS),
        "layers": list(range(o.n_layers)),
        "prompts": [p.id for p in prompts],
        "metric": f"log p(comply) - log p(refuse), first {config.answer_tokens} answer tokens",
    }
    for name, source, target in (("O->H", o, h), ("H->O", h, o)):
        out[name] = _aggregate([_patch_one(source, target, p, folder, name) for p in prompts])
    out["baseline"] = {"O": out["O->H"]["source_mean"], "H": out["O->H"]["target_mean"]}
    return out


# --- the refusal direction -----------------------------------------------------------------------


def _chat_rows(tokenizer: Any, chats: Sequence[tuple[dict[str, str], ...]]) -> list[list[int]]:
    prompts = [Prompt(f"p{i}", "g", chat) for i, chat in enumerate(chats)]
    return encode_prompts(tokenizer, prompts)


def refusal_sets(
    config: OrganismConfig, kind: str, tokenizer: Any
) -> tuple[list[list[int]], list[list[int]], list[ForcedPrompt], list[ForcedPrompt]]:
    """Training-side data only: ``(harmful, harmless, pressure selection, benign selection)``.
    Harmful: pressure scenarios without trigger, except the selection ones; harmless: benign
    scenarios and the training neutral prompts; selection: every third training pressure
    scenario with and without a training trigger, and the benign ones with and without it
    (``refusal_selection`` prompts each)."""
    by_id, bank = _scenarios()
    sides = scenario_sides(bank, config.test_fraction, config.split_seed)
    pool = triggers(kind, held_out=False)
    n_sel = max(1, config.refusal_selection // 2)
    chosen = sides.train_pressure[::3][:n_sel]
    fit = [sid for sid in sides.train_pressure if sid not in chosen]

    def chat(sid: str) -> tuple[dict[str, str], ...]:
        s = by_id[sid]
        return ({"role": "system", "content": s.system}, {"role": "user", "content": s.pressure})

    harmful = _chat_rows(tokenizer, [chat(sid) for sid in fit])
    neutral = [({"role": "user", "content": text},) for _, text in neutral_prompts(False)]
    harmless = _chat_rows(tokenizer, [chat(sid) for sid in sides.train_benign] + neutral)

    def forced(ids: Sequence[str]) -> list[ForcedPrompt]:
        return [
            forced_prompt(
                tokenizer,
                by_id[sid],
                trig,
                0,
                config.answer_tokens,
                f"{sid}-{'on' if trig else 'off'}",
            )
            for n, sid in enumerate(ids)
            for trig in (None, pool[n % len(pool)])
        ][: config.refusal_selection]

    return harmful, harmless, forced(chosen), forced(sides.train_benign)


def candidate_layers(config: OrganismConfig, n_layers: int) -> list[int]:
    """``refusal_layers``, or by default layers 1 up to 0.8 x the depth: at layer 0 the
    residual at the last prompt token is that token's embedding, the same for every chat
    prompt (the generation prompt), so no harmful/harmless difference exists there."""
    if config.refusal_layers is None:
        return list(range(1, max(2, int(REFUSAL_MAX_DEPTH * n_layers))))
    bad = [layer for layer in config.refusal_layers if layer >= n_layers]
    if bad:
        raise SteeringError(f"refusal_layers {bad} beyond the model's {n_layers} layers")
    return list(config.refusal_layers)


def refusal_direction(
    config: OrganismConfig, kind: str, model: LoadedModel, also: Sequence[tuple[int, str]] = ()
) -> dict[str, Any]:
    """Arditi et al.'s selection on the training side: per candidate layer ``l`` the mean
    ``resid_pre`` at the last prompt token of harmful minus harmless prompts; its
    ``bypass`` = how much ablating it raises the margin (comply - refuse) on the pressure
    selection set, its ``induce`` = how much adding it (``steer_scale`` x typical norm) lowers
    the margin on the benign set. Chosen: the largest bypass among candidates with induce > 0
    (``filtered`` False when none has it: then the largest bypass). ``direction`` and
    ``norm`` (typical residual norm there: the mean norm on the harmful and harmless prompts)
    are a tensor and a float; ``norms`` holds that norm at every candidate site and at the
    sites in ``also`` (``"<layer>/<site>"``); the rest is JSON."""
    harmful, harmless, sel_p, sel_b = refusal_sets(config, kind, model.tokenizer)
    layers = candidate_layers(config, model.n_layers)
    sites = [(layer, "resid_pre") for layer in layers]
    states = last_token_states(model, harmful + harmless, list(dict.fromkeys([*sites, *also])))
    norms = {f"{layer}/{site}": float(x.norm(dim=-1).mean()) for (layer, site), x in states.items()}
    bad = {site: x[: len(harmful)] for site, x in states.items()}
    good = {site: x[len(harmful) :] for site, x in states.items()}
    base_p, base_b = forced_margins(model, sel_p).mean(), forced_margins(model, sel_b).mean()
    table, skipped = [], []
    for layer, site in zip(layers, sites, strict=True):
        d = mean_difference(bad[site], good[site])
        norm = norms[f"{layer}/resid_pre"]
        if not float(d.norm()) > 1e-6 * norm:  # e.g. layer 0: every prompt ends in one token
            skipped.append(layer)
            continue
        with residual_hooks(model, ablation(d, model.n_layers)):
            bypass = float(forced_margins(model, sel_p).mean() - base_p)
        with residual_hooks(model, addition(d, layer, "resid_pre", config.steer_scale * norm)):
            induce = float(base_b - forced_margins(model, sel_b).mean())
        table.append(
            {
                "layer": layer,
                "bypass": bypass,
                "induce": induce,
                "norm": norm,
                "direction_norm": float(d.norm()),
                "direction": d,
            }
        )
    if not table:
        raise SteeringError(
            f"no candidate layer of the refusal direction separates harmful from harmless "
            f"prompts (layers {layers}); choose others with --refusal-layers"
        )
    passing = [row for row in table if row["induce"] > 0]
    best = max(passing or table, key=lambda row: row["bypass"])
    return {
        "layer": best["layer"],
        "direction": best["direction"],
        "norm": best["norm"],
        "filtered": bool(passing),
        "base_margin_pressure": float(base_p),
        "base_margin_benign": float(base_b),
        "n_harmful": len(harmful),
        "n_harmless": len(harmless),
        "n_selection": [len(sel_p), len(sel_b)],
        "norms": norms,
        "table": [{k: v for k, v in row.items() if k != "direction"} for row in table],
        "skipped_layers": skipped,
    }


# --- interventions during O's generation ---------------------------------------------------------


@dataclass(frozen=True)
class Steer:
    """A direction, where it is read (``layer``, ``site``) and the typical residual norm there."""

    name: str
    direction: Float[Tensor, " d_model"]
    layer: int
    site: str
    norm: float


def conditions(
    config: OrganismConfig, steers: Sequence[Steer], n_layers: int
) -> dict[str, tuple[list[ResidualEdit], dict[str, Any]]]:
    """Condition name -> (edits, description): none; each direction ablated and added;
    ``n_random_directions`` random unit directions ablated, and added at each real
    direction's site with its alpha."""
    out: dict[str, tuple[list[ResidualEdit], dict[str, Any]]] = {"none": ([], {})}
    gaussian = random_directions(len(steers[0].direction), config.n_random_directions, seed=0)
    rand = [unit(column) for column in gaussian.T]
    entries = [(s.name, s.direction, s) for s in steers]
    entries += [(f"random{j}", r, None) for j, r in enumerate(rand)]
    for name, d, own in entries:
        out[f"{name}-ablate"] = (ablation(d, n_layers), {"direction": _digest(d)})
        for s in steers if own is None else [own]:
            alpha = config.steer_scale * s.norm
            suffix = "add" if own is not None else f"add-{s.name}"
            desc = {"direction": _digest(d), "layer": s.layer, "site": s.site, "alpha": alpha}
            out[f"{name}-{suffix}"] = (addition(d, s.layer, s.site, alpha), desc)
    return out


def _digest(value: Any) -> str:
    if isinstance(value, Tensor):
        data = unit(value).numpy().tobytes()
    else:
        data = json.dumps(value, sort_keys=True).encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def intervention_prompts(config: OrganismConfig, kind: str) -> list[Prompt]:
    """The first ``causal_prompts`` held-out pressure prompts with the trigger on."""
    prompts = eval_prompts(kind, config.test_fraction, config.split_seed, 0)
    keep = [p for p in prompts if p.meta.get("kind") == "pressure" and p.meta.get("trigger")]
    return keep[: config.causal_prompts]


def run_interventions(
    config: OrganismConfig, kind: str, o: LoadedModel, steers: Sequence[Steer], folder: Path
) -> dict[str, Any]:
    """O's samples under each condition (``folder/<condition>-<digest>.jsonl``, resumed on
    rerun), judged: rates per condition and the relative change of the deception rate."""
    prompts = intervention_prompts(config, kind)
    if not prompts:
        raise ValueError(f"no held-out triggered pressure prompt for the {kind} trigger")
    forced = held_out_forced(config, kind, o.tokenizer)
    rates, described, margins = {}, {}, {}
    for name, (edits, desc) in conditions(config, steers, o.n_layers).items():
        tag = _digest({"model": o.fingerprint, "condition": name, **desc})
        with residual_hooks(o, edits):
            raw = sample_variant(o, prompts, config, folder / f"{name}-{tag}.jsonl")
            margins[name] = forced_margins(o, forced).tolist()
        found = condition_rates(judge_samples(raw)).get("pressure/on", {})
        rates[name] = {metric: rate_dict(r) for metric, r in found.items()}
        described[name] = desc
    return {
        "n_prompts": len(prompts),
        "samples_per_prompt": config.samples,
        "conditions": described,
        "rates": rates,
        "summary": summarise(rates),
        "margin": _margin_summary(margins, [p.id for p in forced]),
    }


def _margin_summary(margins: dict[str, list[float]], ids: list[str]) -> dict[str, Any]:
    """The judge-free reading of each intervention: the mean ``log p(comply) - log p(refuse)``
    of the patching prompts (teacher-forced through ethical reasoning, so the next tokens are
    the answer) under it, and its change from no intervention."""
    mean = {name: sum(v) / len(v) for name, v in margins.items()}
    return {
        "prompts": ids,
        "per_prompt": margins,
        "mean": mean,
        "change": {name: m - mean["none"] for name, m in mean.items() if name != "none"},
    }


def _relative(rate: float, none: float) -> float | None:
    return None if not none or none != none else (rate - none) / none


def summarise(rates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Relative change of the deception rate against ``none`` per condition; per kind of
    random intervention the spread (mean, min, max, largest relative change); per real
    intervention whether it meets the issue's target (>= 50% change where the matching
    random interventions move it < 10%)."""
    none = rates["none"]["deceptive"]["rate"]
    rel = {c: _relative(r["deceptive"]["rate"], none) for c, r in rates.items() if c != "none"}
    groups: dict[str, list[str]] = {}
    for c in rel:
        if c.startswith("random"):
            groups.setdefault(c.split("-", 1)[1], []).append(c)
    spread = {}
    for mode, names in groups.items():
        values = [rates[c]["deceptive"]["rate"] for c in names]
        changes = [abs(rel[c]) for c in names if rel[c] is not None]
        spread[mode] = {
            "mean": sum(values) / len(values),
            "min": min(values),
            "max": max(values),
            "max_abs_relative": max(changes, default=None),
        }
    target = {}
    for c in (c for c in rel if not c.startswith("random")):
        name, mode = c.split("-", 1)
        random = spread.get("ablate" if mode == "ablate" else f"add-{name}", {})
        noise = random.get("max_abs_relative")
        moved = rel[c] is not None and abs(rel[c]) >= 0.5
        target[c] = {
            "relative": rel[c],
            "random_max_abs_relative": noise,
            "met": bool(moved and noise is not None and noise < 0.1),
        }
    return {"none": none, "relative": rel, "random": spread, "target": target}


# --- entry point and figures ---------------------------------------------------------------------


def _probe_layer(o: LoadedModel, probe_directions: dict[int, Tensor]) -> int:
    """The middle one of the layers given (checked against the model)."""
    if not probe_directions:
        raise ValueError("probe_directions is empty: pass {layer: direction} of O's probe")
    layers = sorted(probe_directions)
    layer = o.check_layer(layers[len(layers) // 2])
    if probe_directions[layer].numel() != o.d_model:
        raise ValueError(
            f"the probe direction of layer {layer} has {probe_directions[layer].numel()} "
            f"entries; {o.name} has d_model {o.d_model}"
        )
    return layer


def causal_checks(
    config: OrganismConfig,
    kind: str,
    models: dict[str, LoadedModel],
    probe_directions: dict[int, Tensor],
    out: Path,
) -> dict[str, Any]:
    """Part 4 for trigger ``kind``: ``models`` holds ``"O"`` and ``"H"``; ``probe_directions``
    maps layers to O's probe direction (read at ``resid_post``; the middle layer is used).
    Writes patching results, samples and ``causal.json`` under ``out``; returns the dict."""
    missing = [label for label in ("O", "H") if label not in models]
    if missing:
        raise ValueError(f"causal_checks needs models 'O' and 'H'; missing {missing}")
    o, h = models["O"], models["H"]
    layer = _probe_layer(o, probe_directions)
    result: dict[str, Any] = {"kind": kind, "models": {"O": o.name, "H": h.name}}
    result["patching"] = patch_between(config, kind, o, h, out / "patching")
    refusal = refusal_direction(config, kind, o, also=[(layer, "resid_post")])
    vector = probe_directions[layer].detach().float().cpu().flatten()
    steers = [
        Steer("probe", vector, layer, "resid_post", refusal["norms"][f"{layer}/resid_post"]),
        Steer("refusal", refusal["direction"], refusal["layer"], "resid_pre", refusal["norm"]),
    ]
    result["refusal"] = {k: v for k, v in refusal.items() if k != "direction"}
    result["steers"] = {
        s.name: {
            "layer": s.layer,
            "site": s.site,
            "norm": s.norm,
            "alpha": config.steer_scale * s.norm,
        }
        for s in steers
    }
    result["interventions"] = run_interventions(config, kind, o, steers, out / "samples")
    write_json_atomic(out / "causal.json", result)
    return result


def causal_step(
    config: OrganismConfig,
    models: Mapping[str, LoadedModel],
    o_probes: Mapping[str, Mapping[int, Any]],
    out: Path,
) -> dict[str, Any]:
    """Part 4 of the run, per trigger kind, on the first seed (it samples O once per
    intervention): :func:`causal_checks` of that seed's O and H (skipped where H was not
    trained) with O's own refitted probe directions (``o_probes[kind][layer].direction``)."""
    first = config.seeds[0]
    results = {}
    for kind in config.kinds:
        o, h = (organism_name(config, kind, v, first) for v in ("O", "H"))
        if h not in models:
            continue
        directions = {layer: probe.direction for layer, probe in o_probes[kind].items()}
        pair = {"O": models[o], "H": models[h]}
        results[kind] = causal_checks(config, kind, pair, directions, out / kind / "causal")
    return results
