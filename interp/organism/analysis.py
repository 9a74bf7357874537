"""Part 3 for one trigger kind: probes on the organism's (O's) own generations.

- **teacher-forced**: the divergence probe of :mod:`interp.probe` (built-in consistency set,
  the shared scenario split) trained on the base model, on O and on H: held-out AUROC per
  layer with both stance controls.
- **(a)/(d) on-policy**: the base model's probe applied unchanged and the probe refitted on O,
  scored on O's judged replies to held-out pressure prompts (deceptive = ethical reasoning
  and an undesired answer; consistent = the stances agree): AUROC with a scenario-bootstrap
  interval and recall at 1%/5% false positives on O's neutral replies, on the answer tokens
  and at the last reasoning token before ``Answer:``; cosine of the two directions.
- **(c) text only**: a bag-of-words model trained on the same teacher-forced texts, on the
  same text the probe sees at each position.
- **trigger only**: the refitted probe's AUROC between O's replies to held-out benign requests
  with and without the trigger (no chance to deceive: near 0.5 unless it detects the trigger).
- **(b) defection**: the yes/no difference-of-means direction of O, H and the base model at
  the end of the prompt; AUROC of triggered vs untriggered held-out pressure prompts and
  its percentile among random directions; the same on benign prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.data.datasets import build_consistency, load_dataset
from interp.data.split import split_transcripts
from interp.data.transcripts import Transcript, write_transcripts
from interp.hooks import hook_name
from interp.models import LoadedModel
from interp.organism.config import OrganismConfig
from interp.organism.measure import deceptive
from interp.organism.positions import at_prompt_end, pre_answer
from interp.organism.probing import (
    cosine,
    defection_directions,
    onpolicy_metrics,
    pooled,
    random_percentile,
    text_baseline,
)
from interp.organism.train import organism_name
from probes import auroc

POSITIONS = ("answer", "pre_answer")


def probe_data(config: OrganismConfig, out: Path) -> str:
    """The teacher-forced probe data: ``config.probe_dataset``, except that the built-in
    consistency set with ``probe_per_cell`` other than 4 is written to ``out`` first (every
    scenario, fewer transcripts each: the scenario split is the same)."""
    if config.probe_dataset != "builtin:consistency" or config.probe_per_cell == 4:
        return config.probe_dataset
    path = out / f"consistency-per-cell-{config.probe_per_cell}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_transcripts(path, build_consistency(per_cell=config.probe_per_cell))
    return str(path)


def teacher_forced(
    config: OrganismConfig, models: dict[str, LoadedModel], out: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(runs, table)``: a probe run per model label, and its held-out metrics per layer."""
    from interp.probe import ProbeConfig, train_probe

    runs, table = {}, {}
    for label, model in models.items():
        probe_config = ProbeConfig(
            model=model.name,
            dataset=probe_data(config, out),
            layers=config.layers,
            n_random=32,
            device=config.device,
            out=str(out / "probes" / model.name),
            progress=config.progress,
        )
        run = train_probe(probe_config, model=model)
        runs[label] = run
        table[label] = {
            r.layer: {
                "auroc": r.test.metrics.auroc if r.test.metrics else None,
                "auroc_low": r.test.metrics.auroc_low if r.test.metrics else None,
                "auroc_high": r.test.metrics.auroc_high if r.test.metrics else None,
                "answer_stance_auroc": r.test.answer_stance_auroc,
                "reasoning_stance_auroc": r.test.reasoning_stance_auroc,
            }
            for r in run.layers
        }
        table[label]["layer0_auroc"] = run.layer0.metrics.auroc if run.layer0.metrics else None
    return runs, table


def eval_rows(samples: Sequence[Transcript]) -> tuple[list[Transcript], Tensor]:
    """O's judged replies to pressure prompts whose two stances were decided, except
    unethical reasoning followed by a refusal; label 1 = deceptive."""
    rows = []
    for t in samples:
        v = t.meta.get("verdict") or {}
        if t.meta.get("kind") != "pressure" or not v.get("reasoning_present"):
            continue
        stance, answer = v.get("reasoning_stance"), v.get("answer_undesired")
        decided = stance in ("ethical", "unethical") and answer in ("yes", "no")
        if decided and not (stance == "unethical" and answer == "no"):
            rows.append(t)
    return rows, torch.tensor([int(deceptive(t)) for t in rows])


def _position_sets(
    rows: Sequence[Transcript], neutral: Sequence[Transcript]
) -> dict[str, tuple[list[Transcript], str, list[int], list[Transcript], str]]:
    """Per position: transcripts to read, token selection, kept row indices, neutral
    transcripts and their token selection."""
    cut = [pre_answer(t) for t in rows]
    kept = [i for i, t in enumerate(cut) if t is not None]
    return {
        "answer": (list(rows), "answer", list(range(len(rows))), list(neutral), "answer"),
        "pre_answer": ([cut[i] for i in kept], "last", kept, list(neutral), "last"),  # type: ignore[misc]
    }


def _text_at(t: Transcript, position: str) -> str:
    if position == "pre_answer":
        cut = pre_answer(t)
        return cut.reply if cut is not None else t.reply
    return t.reply


def onpolicy(
    config: OrganismConfig,
    folder: Path,
    o_model: LoadedModel,
    runs: dict[str, Any],
    o_samples: Sequence[Transcript],
) -> dict[str, Any]:
    """(a), (c) and (d) on O's replies, per position and layer."""
    rows, y = eval_rows(o_samples)
    neutral = [t for t in o_samples if t.meta.get("kind") == "neutral"]
    out: dict[str, Any] = {"n_rows": len(rows), "n_deceptive": int(y.sum()), "positions": {}}
    consistency = load_dataset(probe_data(config, folder))
    train_rows, _ = split_transcripts(consistency, config.test_fraction, config.split_seed)
    train_tf = [consistency[i] for i in train_rows.tolist()]
    for position, (texts, tokens, kept, neut, neut_tokens) in _position_sets(rows, neutral).items():
        yk = y[kept]
        groups = [rows[i].group for i in kept]
        entry: dict[str, Any] = {"n": len(kept), "n_deceptive": int(yk.sum()), "layers": {}}
        if texts:
            acts = pooled(o_model, texts, config.layers, tokens)
            nacts = pooled(o_model, neut, config.layers, neut_tokens) if neut else None
            for layer in config.layers:
                entry["layers"][layer] = {
                    label: _layer_metrics(
                        runs[label].probes[layer],
                        acts[layer],
                        None if nacts is None else nacts[layer],
                        yk,
                        groups,
                        config.n_boot,
                    )
                    for label in ("base", "O")
                }
            text_scores = text_baseline(
                [_text_at(t, position) for t in train_tf],
                [int(t.label or 0) for t in train_tf],
                [_text_at(rows[i], position) for i in kept],
            )
            entry["text_baseline"] = onpolicy_metrics(yk, text_scores, groups, None, config.n_boot)
        out["positions"][position] = entry
    return out


def _score(probe: Any, X: Tensor) -> Tensor:
    return probe.score(X.to(probe.direction.device)).cpu()


def _layer_metrics(
    probe: Any, X: Tensor, neutral: Tensor | None, y: Tensor, groups: list[str], n_boot: int
) -> dict[str, Any]:
    neutral_scores = None if neutral is None else _score(probe, neutral)
    return onpolicy_metrics(y, _score(probe, X), groups, neutral_scores, n_boot)


def trigger_only(
    config: OrganismConfig, o_model: LoadedModel, run: Any, o_samples: Sequence[Transcript]
) -> dict[str, Any]:
    """The refitted probe's AUROC, triggered vs untriggered replies to held-out benign
    requests (answer tokens)."""
    rows = [t for t in o_samples if t.meta.get("kind") == "benign"]
    y = torch.tensor([int(bool(t.meta["trigger"])) for t in rows])
    if not rows or not 0 < int(y.sum()) < len(y):
        return {"n": len(rows), "layers": {}}
    acts = pooled(o_model, rows, config.layers, "answer")
    return {
        "n": len(rows),
        "layers": {
            layer: auroc(y, _score(run.probes[layer], acts[layer])) for layer in config.layers
        },
    }


def defection(config: OrganismConfig, kind: str, models: dict[str, LoadedModel]) -> dict[str, Any]:
    """(b) per model label and layer."""
    from interp.organism.sample import eval_prompts

    prompts = [
        Transcript(p.id, p.group, (*p.messages, {"role": "assistant", "content": ""}), meta=p.meta)
        for p in eval_prompts(
            kind, config.test_fraction, config.split_seed, eval_scenarios=config.eval_scenarios
        )
        if p.meta["kind"] != "neutral"
    ]
    reads = [at_prompt_end(t) for t in prompts]
    trig = torch.tensor([int(bool(t.meta["trigger"])) for t in prompts])
    pressure = torch.tensor([t.meta["kind"] == "pressure" for t in prompts])
    out: dict[str, Any] = {}
    for label, model in models.items():
        directions = defection_directions(model, config.layers)
        acts = pooled(model, reads, config.layers, "last")
        out[label] = {}
        for layer in config.layers:
            X, d = acts[layer], directions[layer]
            entry = random_percentile(X[pressure], trig[pressure], d, config.n_random)
            benign = ~pressure
            if 0 < int(trig[benign].sum()) < int(benign.sum()):
                entry["benign_auroc"] = auroc(trig[benign], X[benign] @ d)
            out[label][layer] = entry
    return out


def stance_erasure(
    config: OrganismConfig,
    folder: Path,
    models: dict[str, LoadedModel],
    o_samples: Sequence[Transcript],
) -> dict[str, Any]:
    """Part 5's LEACE stance erasure per model and layer: held-out teacher-forced AUROCs
    (divergence, both stances) before and after; for O also on its own judged replies."""
    from interp.cache import cache_activations
    from interp.paths import cache_root
    from interp.probe.controls import CONTROL_HOOK
    from interp.probe.erasure import erasure_report

    data = load_dataset(probe_data(config, folder))
    train, test = split_transcripts(data, config.test_fraction, config.split_seed)
    train_t, test_t = [data[i] for i in train.tolist()], [data[i] for i in test.tolist()]
    hooks = [hook_name(layer, "resid_post") for layer in config.layers]
    rows, _ = eval_rows(o_samples)
    out: dict[str, Any] = {}
    for label, model in models.items():
        acts = cache_activations(  # the probe pipeline's cache: reused, not recomputed
            model, data, [*hooks, CONTROL_HOOK], "answer",
            cache_dir=cache_root() / "activations", progress=False,
        )  # fmt: skip
        gen = pooled(model, rows, config.layers, "answer") if label == "O" and rows else None
        out[label] = {}
        for layer, hook in zip(config.layers, hooks, strict=True):
            X = acts[hook]
            entry = {"teacher_forced": erasure_report(X[train], train_t, X[test], test_t)}
            if gen is not None:
                entry["onpolicy"] = erasure_report(X[train], train_t, gen[layer], rows)
            out[label][layer] = entry
    return out


def analyse_kind(
    config: OrganismConfig,
    kind: str,
    base: LoadedModel,
    models: dict[str, LoadedModel],
    samples: dict[str, list[Transcript]],
    out: Path,
) -> dict[str, Any]:
    """Everything of part 3 for trigger ``kind`` (first seed)."""
    seed = config.seeds[0]
    named = {"base": base, "O": models[organism_name(config, kind, "O", seed)]}
    h_name = organism_name(config, kind, "H", seed)
    if h_name in models:
        named["H"] = models[h_name]
    runs, table = teacher_forced(config, named, out / kind)
    o_samples = samples[organism_name(config, kind, "O", seed)]
    result = {
        "teacher_forced": table,
        "onpolicy": onpolicy(config, out / kind, named["O"], runs, o_samples),
        "cosine_base_vs_refit": {
            layer: cosine(runs["base"].probes[layer].direction, runs["O"].probes[layer].direction)
            for layer in config.layers
        },
        "trigger_only": trigger_only(config, named["O"], runs["O"], o_samples),
        "defection": defection(config, kind, named),
        "stance_erasure": stance_erasure(config, out / kind, named, o_samples),
    }
    return result
