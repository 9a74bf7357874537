"""Part 3 for one trigger kind and seed: probes on the organism's (O's) own generations,
with part 5's controls (:mod:`interp.organism.controls`), for every seed.

- **teacher-forced**: the divergence probe of :mod:`interp.probe` (built-in consistency set,
  the shared scenario split) trained on the base model, on O and on H: held-out AUROC per
  layer with both stance controls.
- **(a)/(d) on-policy**: the base model's probe applied unchanged and the probes refitted on O
  and on H, scored on O's judged replies to held-out pressure prompts (deceptive = ethical
  reasoning and an undesired answer; consistent = the stances agree): AUROC with a
  scenario-bootstrap interval and recall at 1%/5% false positives on O's neutral replies, on
  the answer tokens and at the last reasoning token before ``Answer:``; cosine of the base
  and O directions.
- **(c) text only**: a bag-of-words model trained on the same teacher-forced texts, on the
  same text the probe sees at each position.
- **trigger only**: the refitted probe's AUROC between O's replies to held-out benign requests
  with and without the trigger (no chance to deceive: near 0.5 unless it detects the trigger).
- **(b) defection**: the yes/no difference-of-means direction of O, H and the base model at
  the end of the prompt; AUROC of triggered vs untriggered held-out pressure prompts and
  its percentile among random directions; the same on benign prompts.
- **H on H** (``onpolicy_H``): the same on-policy reading of the honest control's replies with
  the base probe and H's refitted probe (an AUROC only where H wrote both kinds of reply):
  O is always compared with H, never only with the base model.
- **part 5**: the trigger direction projected out of the base and O probes
  (``trigger_projection``); across seeds (:func:`analyse_seeds`) the cross-trigger transfer
  (``transfer``, when both kinds are configured) and everything above per seed (``by_seed``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.config import model_options
from interp.data.datasets import build_consistency, load_dataset
from interp.data.split import split_transcripts
from interp.data.transcripts import Transcript, write_transcripts
from interp.hooks import hook_name
from interp.models import LoadedModel
from interp.organism.config import OrganismConfig
from interp.organism.controls import cross_trigger, trigger_projection
from interp.organism.positions import at_prompt_end, pre_answer
from interp.organism.probing import (
    cosine,
    defection_directions,
    eval_rows,
    onpolicy_metrics,
    pooled,
    position_sets,
    probe_scores,
    random_percentile,
    score_positions,
    text_baseline,
)
from interp.organism.train import organism_name
from probes import auroc


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
            **model_options(config),
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


def _text_at(t: Transcript, position: str) -> str:
    if position == "pre_answer":
        cut = pre_answer(t)
        return cut.reply if cut is not None else t.reply
    return t.reply


def onpolicy(
    config: OrganismConfig,
    folder: Path,
    model: LoadedModel,
    runs: dict[str, Any],
    samples: Sequence[Transcript],
    labels: Sequence[str] = ("base", "O"),
) -> dict[str, Any]:
    """(a), (c) and (d) on ``model``'s own judged replies (``samples``), per position and
    layer: the probes of ``runs[label]`` for each of ``labels``, and the text baseline."""
    rows, y = eval_rows(samples)
    neutral = [t for t in samples if t.meta.get("kind") == "neutral"]
    probes = {label: runs[label].probes for label in labels if label in runs}
    positions = score_positions(model, rows, y, neutral, probes, config.layers, config.n_boot)
    consistency = load_dataset(probe_data(config, folder))
    train_rows, _ = split_transcripts(consistency, config.test_fraction, config.split_seed)
    train_tf = [consistency[i] for i in train_rows.tolist()]
    for position, (_, _, kept, _, _) in position_sets(rows, neutral).items():
        if not kept:
            continue
        text_scores = text_baseline(
            [_text_at(t, position) for t in train_tf],
            [int(t.label or 0) for t in train_tf],
            [_text_at(rows[i], position) for i in kept],
        )
        positions[position]["text_baseline"] = onpolicy_metrics(
            y[kept], text_scores, [rows[i].group for i in kept], None, config.n_boot
        )
    return {"n_rows": len(rows), "n_deceptive": int(y.sum()), "positions": positions}


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
            layer: auroc(y, probe_scores(run.probes[layer], acts[layer])) for layer in config.layers
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


def teacher_forced_acts(
    config: OrganismConfig, folder: Path, model: LoadedModel
) -> tuple[list[Transcript], dict[int, Float[Tensor, "n d_model"]]]:
    """The teacher-forced probe data and ``model``'s pooled answer-token activations of it
    per layer: the probe pipeline's cache, reused, not recomputed."""
    from interp.cache import cache_activations
    from interp.hooks import CONTROL_HOOK
    from interp.paths import cache_root

    data = load_dataset(probe_data(config, folder))
    hooks = [hook_name(layer, "resid_post") for layer in config.layers]
    acts = cache_activations(
        model, data, [*hooks, CONTROL_HOOK], "answer",
        cache_dir=cache_root() / "activations", progress=False,
    )  # fmt: skip
    return data, {layer: acts[hook] for layer, hook in zip(config.layers, hooks, strict=True)}


def training_rows(
    config: OrganismConfig, folder: Path, model: LoadedModel
) -> dict[int, tuple[Float[Tensor, "n d_model"], Tensor]]:
    """Per layer: ``model``'s activations of the teacher-forced training rows and their
    labels (what its refitted probe was fitted on)."""
    data, acts = teacher_forced_acts(config, folder, model)
    train, _ = split_transcripts(data, config.test_fraction, config.split_seed)
    y = torch.tensor([int(data[i].label or 0) for i in train.tolist()], dtype=torch.long)
    return {layer: (X[train], y) for layer, X in acts.items()}


def stance_erasure(
    config: OrganismConfig,
    folder: Path,
    models: dict[str, LoadedModel],
    o_samples: Sequence[Transcript],
) -> dict[str, Any]:
    """Part 5's LEACE stance erasure per model and layer: held-out teacher-forced AUROCs
    (divergence, both stances) before and after; for O also on its own judged replies."""
    from interp.probe.erasure import erasure_report

    rows, _ = eval_rows(o_samples)
    out: dict[str, Any] = {}
    for label, model in models.items():
        data, acts = teacher_forced_acts(config, folder, model)
        train, test = split_transcripts(data, config.test_fraction, config.split_seed)
        train_t, test_t = [data[i] for i in train.tolist()], [data[i] for i in test.tolist()]
        gen = pooled(model, rows, config.layers, "answer") if label == "O" and rows else None
        out[label] = {}
        for layer, X in acts.items():
            entry = {"teacher_forced": erasure_report(X[train], train_t, X[test], test_t)}
            if gen is not None:
                entry["onpolicy"] = erasure_report(X[train], train_t, gen[layer], rows)
            out[label][layer] = entry
    return out


def _kind_models(
    config: OrganismConfig,
    kind: str,
    seed: int,
    base: LoadedModel,
    models: Mapping[str, LoadedModel],
) -> dict[str, LoadedModel]:
    """``{"base", "O"[, "H"]}`` of trigger ``kind`` and ``seed`` (H when it was trained)."""
    named = {"base": base, "O": models[organism_name(config, kind, "O", seed)]}
    h_name = organism_name(config, kind, "H", seed)
    if h_name in models:
        named["H"] = models[h_name]
    return named


def _analyse(
    config: OrganismConfig,
    kind: str,
    seed: int,
    named: dict[str, LoadedModel],
    samples: dict[str, list[Transcript]],
    out: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(result, runs)`` of :func:`analyse_kind`; ``runs``: the teacher-forced probe runs."""
    runs, table = teacher_forced(config, named, out / kind)
    o_samples = samples[organism_name(config, kind, "O", seed)]
    result = {
        "seed": seed,
        "teacher_forced": table,
        "onpolicy": onpolicy(config, out / kind, named["O"], runs, o_samples, ("base", "O", "H")),
        "cosine_base_vs_refit": {
            layer: cosine(runs["base"].probes[layer].direction, runs["O"].probes[layer].direction)
            for layer in config.layers
        },
        "trigger_only": trigger_only(config, named["O"], runs["O"], o_samples),
        "trigger_projection": trigger_projection(
            config, kind, named["O"], {"base": runs["base"].probes, "O": runs["O"].probes},
            o_samples, {"O": training_rows(config, out / kind, named["O"])},
        ),
        "defection": defection(config, kind, named),
        "stance_erasure": stance_erasure(config, out / kind, named, o_samples),
    }  # fmt: skip
    h_name = organism_name(config, kind, "H", seed)
    if "H" in named and h_name in samples:
        result["onpolicy_H"] = onpolicy(
            config, out / kind, named["H"], runs, samples[h_name], ("base", "H")
        )
    return result, runs


def analyse_kind(
    config: OrganismConfig,
    kind: str,
    base: LoadedModel,
    models: Mapping[str, LoadedModel],
    samples: dict[str, list[Transcript]],
    out: Path,
    seed: int | None = None,
) -> dict[str, Any]:
    """Everything of part 3 for trigger ``kind`` and ``seed`` (default: the first), with the
    trigger-projection control of part 5 and the on-policy probes of H on H's replies
    (``onpolicy_H``) beside O's."""
    seed = config.seeds[0] if seed is None else seed
    named = _kind_models(config, kind, seed, base, models)
    return _analyse(config, kind, seed, named, samples, out)[0]


def analyse_seed(
    config: OrganismConfig,
    seed: int,
    base: LoadedModel,
    models: Mapping[str, LoadedModel],
    samples: dict[str, list[Transcript]],
    out: Path,
) -> tuple[dict[str, Any], dict[str, Mapping[int, Any]]]:
    """``{"probes": {kind: analyse_kind(...)}, "transfer": ...}`` of one seed, and O's
    refitted probes per kind (part 4 steers with their directions); the transfer
    (:func:`interp.organism.controls.cross_trigger`) runs when both trigger kinds are there."""
    probes, o_models, o_probes, o_samples = {}, {}, {}, {}
    for kind in config.kinds:
        named = _kind_models(config, kind, seed, base, models)
        probes[kind], runs = _analyse(config, kind, seed, named, samples, out)
        o_models[kind], o_probes[kind] = named["O"], runs["O"].probes
        o_samples[kind] = samples[organism_name(config, kind, "O", seed)]
    result = {"probes": probes, "transfer": cross_trigger(config, o_models, o_probes, o_samples)}
    return result, o_probes


class _SeedModels(Mapping[str, LoadedModel]):
    """The models already loaded, and any other trained O or H of the trigger kinds loaded
    on first use (:func:`interp.models.load_model`) and held until :meth:`release`."""

    def __init__(self, config: OrganismConfig, loaded: Mapping[str, LoadedModel]) -> None:
        self.loaded = dict(loaded)
        self.extra: dict[str, LoadedModel] = {}
        self.options = model_options(config)
        self.names = {
            organism_name(config, k, v, s)
            for k in config.kinds for v in ("O", "H") if v in config.variants
            for s in config.seeds
        }  # fmt: skip

    def __getitem__(self, name: str) -> LoadedModel:
        if name in self.loaded:
            return self.loaded[name]
        if name not in self.names:
            raise KeyError(name)
        if name not in self.extra:
            from interp.models import load_model

            self.extra[name] = load_model(name, **self.options)
        return self.extra[name]

    def __contains__(self, name: object) -> bool:  # without loading it
        return name in self.names or name in self.loaded

    def __iter__(self) -> Iterator[str]:
        return iter(self.names | set(self.loaded))

    def __len__(self) -> int:
        return len(self.names | set(self.loaded))

    def release(self) -> None:
        self.extra.clear()
        gc.collect()


def analyse_seeds(
    config: OrganismConfig,
    base: LoadedModel,
    models: Mapping[str, LoadedModel],
    samples: dict[str, list[Transcript]],
    out: Path,
) -> tuple[dict[str, Any], dict[str, Mapping[int, Any]]]:
    """:func:`analyse_seed` for every seed of ``config.seeds``: ``by_seed`` (seed as a
    string), and ``probes`` and ``transfer`` of the first seed (the keys of a one-seed run);
    with the first seed's O probes per kind. O and H of seeds not in ``models`` are loaded
    one seed at a time."""
    lazy = _SeedModels(config, models)
    by_seed, first_probes = {}, {}
    for seed in config.seeds:
        by_seed[str(seed)], o_probes = analyse_seed(config, seed, base, lazy, samples, out)
        if seed == config.seeds[0]:
            first_probes = o_probes
        lazy.release()
    first = by_seed[str(config.seeds[0])]
    summary = {"probes": first["probes"], "transfer": first["transfer"], "by_seed": by_seed}
    return summary, first_probes
