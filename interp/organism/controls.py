"""Part 5's controls that keep the organism's probe honest (issue 14).

A probe that separates the organism's (O's) deceptive replies from its consistent ones might
only detect the trigger: O deceives under the trigger and not without it. These controls ask
whether that is what it does.

- :func:`cross_trigger`: the probe refitted on one trigger kind's organism scored on the
  other kind's organism's judged replies (tag -> pressure and pressure -> tag). The two
  triggers share nothing in their text, so a trigger detector does not transfer; a probe of
  the behaviour can. The replies are read by the organism that wrote them (its own
  activations, the on-policy reading) and by the probe's organism (same texts, the probe's
  own activation space), beside the replying organism's own refitted probe.
- :func:`trigger_directions` / :func:`trigger_projection`: the trigger direction per layer
  (mean activation of triggered minus untriggered *training-side* prompts, pressure and
  benign, read by O; never evaluation prompts) at the end of the prompt and at the probe's
  own positions, projected out of each probe direction; on-policy AUROC before and after,
  the drop, the cosine of the two directions, and the trigger-only control (held-out benign
  replies, trigger on vs off) before and after. The training prompts are read with H's
  training replies, which are the same with and without the trigger, so the difference at
  the reply's positions is the trigger's alone. A linear probe's score changes with the
  activations only through its direction, so projecting the trigger direction out of the
  direction and out of the activations give the same scores.
- :func:`seed_spread`: per metric (on-policy AUROCs, the trigger-only and defection
  controls, transfer, projection, the judged rates of O, H and C), each seed's value and n
  and their mean, min and max.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.data.scenarios import load_bank
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.organism.config import OrganismConfig
from interp.organism.data import organism_examples
from interp.organism.positions import at_prompt_end, pre_answer
from interp.organism.probing import (
    cosine,
    eval_rows,
    onpolicy_metrics,
    pooled,
    position_sets,
    probe_scores,
    score_positions,
)
from probes import Probe, auroc, directions, make_probe
from probes.directions import project_out

#: Where the trigger direction is read: the end of the prompt (plus the forced opening
#: ``Reasoning:``) and the probe's own two positions.
TRIGGER_POSITIONS = ("prompt_end", "answer", "pre_answer")
NOT_RUN = "not run: needs both kinds"


class ControlError(ValueError):
    """A control was asked of data that cannot give it."""


# --- cross-trigger transfer ---------------------------------------------------------------


def cross_trigger(
    config: OrganismConfig,
    o_models: dict[str, LoadedModel],
    o_probes: dict[str, dict[int, Probe]],
    o_samples: dict[str, list[Transcript]],
) -> dict[str, Any]:
    """Per direction ``"<probe's kind>-><replies' kind>"``: the probe refitted on the first
    kind's O (``o_probes[kind]``, per layer) on the second kind's O's judged replies, per
    reader (``replier``: the replying O's activations, with its own refitted probe beside it
    as ``own``; ``probe_model``: the probe's O reads the same replies), position and layer.
    Without both kinds: ``{"status": "not run: needs both kinds"}``."""
    kinds = [k for k in config.kinds if k in o_models]
    if len(kinds) < 2:
        return {"status": NOT_RUN}
    out: dict[str, Any] = {"status": "run", "directions": {}}
    for src, tgt in permutations(kinds, 2):
        rows, y = eval_rows(o_samples[tgt])
        neutral = [t for t in o_samples[tgt] if t.meta.get("kind") == "neutral"]
        readers = {
            "replier": score_positions(
                o_models[tgt], rows, y, neutral,
                {"transfer": o_probes[src], "own": o_probes[tgt]}, config.layers, config.n_boot,
            ),
            "probe_model": score_positions(
                o_models[src], rows, y, neutral, {"transfer": o_probes[src]},
                config.layers, config.n_boot,
            ),
        }  # fmt: skip
        out["directions"][f"{src}->{tgt}"] = {
            "probe": f"O-{src} refitted",
            "replies": f"O-{tgt}",
            "n_rows": len(rows),
            "n_deceptive": int(y.sum()),
            "readers": readers,
        }
    return out


# --- the trigger direction ----------------------------------------------------------------


def trigger_reads(config: OrganismConfig, kind: str) -> dict[str, tuple[list[Transcript], str]]:
    """Per trigger position: the training-side prompts of ``kind`` (every training pressure
    and benign scenario, without and with a training trigger) as transcripts to read, and
    the token selection. The replies are H's training replies (the same text with and
    without the trigger)."""
    pressure, benign = organism_examples(
        "H", kind, per_scenario=config.per_scenario, test_fraction=config.test_fraction,
        split_seed=config.split_seed, bank=load_bank(),
    )  # fmt: skip
    rows = pressure + benign
    cut = [c for c in (pre_answer(t) for t in rows) if c is not None]
    return {
        "prompt_end": ([at_prompt_end(t) for t in rows], "last"),
        "answer": (rows, "answer"),
        "pre_answer": (cut, "last"),
    }


def mean_difference(X: Float[Tensor, "n d"], on: Tensor) -> Float[Tensor, " d"]:
    """Mean of the rows where ``on`` minus the mean of the others."""
    on = on.bool()
    if not 0 < int(on.sum()) < len(on):
        raise ControlError(
            f"a trigger direction needs triggered and untriggered rows; got {int(on.sum())} "
            f"triggered of {len(on)}"
        )
    return directions.mean_difference(X[on], X[~on])


def trigger_directions(
    model: LoadedModel, reads: dict[str, tuple[list[Transcript], str]], layers: Sequence[int]
) -> dict[str, dict[int, Float[Tensor, " d_model"]]]:
    """Per trigger position and layer: ``model``'s mean activation of the triggered reads
    minus the untriggered ones (:func:`trigger_reads`)."""
    out: dict[str, dict[int, Tensor]] = {}
    for position, (texts, tokens) in reads.items():
        on = torch.tensor([bool(t.meta["trigger"]) for t in texts])
        acts = pooled(model, texts, layers, tokens)
        out[position] = {layer: mean_difference(acts[layer], on) for layer in layers}
    return out


def refit_without(
    probe: Probe, X: Float[Tensor, "n d"], y: Tensor, remove: Float[Tensor, " d"]
) -> Probe:
    """A probe of ``probe``'s kind and settings fitted on ``X`` with ``remove`` projected out
    of every row (it cannot read anything along ``remove``)."""
    return make_probe(probe.kind, **probe.settings()).fit(project_out(X, remove), y)


# --- projecting the trigger direction out of the probe ---------------------------------------


@dataclass(frozen=True)
class _Reading:
    """O's judged replies at one position and layer (``X``, labels, scenarios) and its
    held-out benign replies (``benign``, trigger flags ``on``)."""

    X: Tensor
    y: Tensor
    groups: list[str]
    benign: Tensor | None
    on: Tensor
    n_boot: int

    def metrics(self, scores: Tensor) -> dict[str, Any]:
        return onpolicy_metrics(self.y, scores, self.groups, None, self.n_boot)

    def trigger_only(self, d: Tensor | Probe, remove: Tensor | None = None) -> float | None:
        """AUROC of trigger on vs off on the benign replies (``remove`` projected out)."""
        if self.benign is None or not 0 < int(self.on.sum()) < len(self.on):
            return None
        X = self.benign if remove is None else project_out(self.benign, remove)
        return auroc(self.on, X @ d if isinstance(d, Tensor) else probe_scores(d, X))


def _projected(d: Tensor, t: Tensor, r: _Reading) -> dict[str, Any]:
    """Direction ``d`` on O's replies and the trigger-only control, before and after
    projecting ``t`` out of it."""
    after_d = project_out(d, t)
    before, after = r.metrics(r.X @ d), r.metrics(r.X @ after_d)
    return {
        "cosine": cosine(d, t),
        "cosine_after": cosine(after_d, t),
        "auroc": before["auroc"],
        "auroc_low": before["auroc_low"],
        "auroc_high": before["auroc_high"],
        "auroc_after": after["auroc"],
        "auroc_after_low": after["auroc_low"],
        "auroc_after_high": after["auroc_high"],
        "drop": None if before["auroc"] is None else before["auroc"] - after["auroc"],
        "trigger_only": r.trigger_only(d),
        "trigger_only_after": r.trigger_only(after_d),
    }


def _refitted(
    probe: Probe, t: Tensor, train: tuple[Tensor, Tensor], r: _Reading, before: float | None
) -> dict[str, Any]:
    """:func:`refit_without` on the teacher-forced training rows ``train``, scored on the
    projected replies (and benign replies for the trigger-only control)."""
    refit = refit_without(probe, train[0], train[1], t)
    m = r.metrics(probe_scores(refit, project_out(r.X, t)))
    return {
        "auroc_refit": m["auroc"],
        "auroc_refit_low": m["auroc_low"],
        "auroc_refit_high": m["auroc_high"],
        "drop_refit": None if before is None or m["auroc"] is None else before - m["auroc"],
        "trigger_only_refit": r.trigger_only(refit, t),
    }


def _projection_entry(
    probe: Probe, sources: dict[str, Tensor], r: _Reading, train: tuple[Tensor, Tensor] | None
) -> dict[str, Any]:
    """Per trigger-direction source: :func:`_projected`, and :func:`_refitted` with ``train``."""
    out = {}
    for source, t in sources.items():
        out[source] = _projected(probe.direction.cpu(), t, r)
        if train is not None:
            out[source].update(_refitted(probe, t, train, r, out[source]["auroc"]))
    return out


def trigger_projection(
    config: OrganismConfig,
    kind: str,
    o_model: LoadedModel,
    probes: dict[str, dict[int, Probe]],
    o_samples: Sequence[Transcript],
    refit_on: dict[str, dict[int, tuple[Tensor, Tensor]]] | None = None,
) -> dict[str, Any]:
    """The trigger direction of ``kind`` (O's activations, training-side prompts) projected
    out of each probe (``probes[label][layer]``): per read position of O's judged replies,
    layer, probe label and trigger-direction source (the same position, or ``prompt_end``),
    the AUROC before and after and the drop, both cosines, and the trigger-only control
    (held-out benign replies, answer tokens) before and after. For the labels of
    ``refit_on`` (per layer: the teacher-forced training activations and labels the probe
    was fitted on), also the probe refitted with the direction projected out of every row
    (``auroc_refit``, ``drop_refit``, ``trigger_only_refit``)."""
    reads = trigger_reads(config, kind)
    dirs = trigger_directions(o_model, reads, config.layers)
    rows, y = eval_rows(o_samples)
    benign = [t for t in o_samples if t.meta.get("kind") == "benign"]
    on = torch.tensor([bool(t.meta["trigger"]) for t in benign], dtype=torch.long)
    bacts = pooled(o_model, benign, config.layers, "answer") if benign else None
    out: dict[str, Any] = {
        "n_train_prompts": {p: len(texts) for p, (texts, _) in reads.items()},
        "n_benign": len(benign),
        "positions": {},
    }
    for position, (texts, tokens, kept, _, _) in position_sets(rows, []).items():
        yk, groups = y[kept], [rows[i].group for i in kept]
        entry: dict[str, Any] = {"n": len(kept), "n_deceptive": int(yk.sum()), "layers": {}}
        acts = pooled(o_model, texts, config.layers, tokens) if texts else {}
        for layer, X in acts.items():
            sources = {s: dirs[s][layer] for s in dict.fromkeys((position, "prompt_end"))}
            r = _Reading(X, yk, groups, None if bacts is None else bacts[layer], on, config.n_boot)
            entry["layers"][layer] = {
                label: _projection_entry(
                    per_layer[layer], sources, r, _at(refit_on or {}, label, layer)
                )
                for label, per_layer in probes.items()
            }
        out["positions"][position] = entry
    return out


# --- the spread over seeds ---------------------------------------------------------------


def _at(tree: Any, *keys: Any) -> Any:
    """``tree[k0][k1]...``, trying each key as given and as a string (JSON keys); None when
    a level is missing."""
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key, tree.get(str(key)))
    return tree


def _onpolicy_metrics(kind: str, probes: dict[str, Any], layers: Sequence[int]) -> dict:
    out = {}
    for model in ("O", "H"):
        key = "onpolicy" if model == "O" else "onpolicy_H"
        for position, entry in (_at(probes, key, "positions") or {}).items():
            for layer in layers:
                for label, metrics in (_at(entry, "layers", layer) or {}).items():
                    name = f"{kind}: on {model}'s replies, {position}, L{layer}, probe of {label}"
                    out[name] = (metrics.get("auroc"), entry["n"])
            name = f"{kind}: on {model}'s replies, {position}, text-only baseline"
            out[name] = (_at(entry, "text_baseline", "auroc"), entry["n"])
    return out


def _teacher_forced_metrics(kind: str, probes: dict[str, Any], layers: Sequence[int]) -> dict:
    out = {}
    for label, table in (probes.get("teacher_forced") or {}).items():
        for layer in layers:
            name = f"{kind}: teacher-forced probe of {label}, held-out consistency set, L{layer}"
            out[name] = (_at(table, layer, "auroc"), None)
    return out


def _control_metrics(kind: str, probes: dict[str, Any], layers: Sequence[int]) -> dict:
    out = {}
    trig = probes.get("trigger_only") or {}
    for layer in layers:
        name = f"{kind}: trigger-only control (O's benign replies, probe of O), L{layer}"
        out[name] = (_at(trig, "layers", layer), trig.get("n"))
        for label in _at(probes, "defection") or {}:
            name = f"{kind}: defection probe of {label} (held-out pressure prompts), L{layer}"
            out[name] = (_at(probes, "defection", label, layer, "auroc"), None)
    for position, entry in (_at(probes, "trigger_projection", "positions") or {}).items():
        for layer in layers:
            name = f"{kind}: probe of O on O's replies, {position}, L{layer}, trigger projected out"
            metrics = _at(entry, "layers", layer, "O", position) or {}
            out[f"{name}: AUROC after"] = (metrics.get("auroc_after"), entry["n"])
            out[f"{name}: drop"] = (metrics.get("drop"), entry["n"])
            if "auroc_refit" in metrics:
                out[f"{name}: refitted, AUROC"] = (metrics["auroc_refit"], entry["n"])
    return out


def _transfer_metrics(transfer: dict[str, Any], layers: Sequence[int]) -> dict:
    out = {}
    for direction, entry in (transfer.get("directions") or {}).items():
        for position, pos in (_at(entry, "readers", "replier") or {}).items():
            for layer in layers:
                name = f"transfer {direction}: on the replies' O, {position}, L{layer}"
                out[name] = (_at(pos, "layers", layer, "transfer", "auroc"), pos["n"])
    return out


def probe_seed_metrics(seed_result: dict[str, Any], layers: Sequence[int]) -> dict:
    """Flat ``{metric: (value, n)}`` of one seed's probe analysis (``{"probes": {kind: ...},
    "transfer": ...}``)."""
    out: dict[str, tuple[Any, Any]] = {}
    for kind, probes in seed_result["probes"].items():
        out.update(_teacher_forced_metrics(kind, probes, layers))
        out.update(_onpolicy_metrics(kind, probes, layers))
        out.update(_control_metrics(kind, probes, layers))
    out.update(_transfer_metrics(seed_result.get("transfer") or {}, layers))
    return out


RATE_METRICS = (("deceptive", "pressure/on"), ("deceptive", "pressure/off"),
                ("complied", "pressure/on"), ("complied", "pressure/off"))  # fmt: skip


def rate_seed_metrics(rates: dict[str, Any]) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Per seed (as a string): ``{metric: (rate, n)}`` of the judged rates of every model."""
    out: dict[str, dict[str, tuple[Any, Any]]] = {}
    for entry in rates.values():
        seed = str(entry["seed"])
        for metric, cond in RATE_METRICS:
            r = _at(entry, "rates", cond, metric)
            where = cond.replace("/", " prompts, trigger ")
            name = f"{entry['kind']}: {entry['variant']} {metric} rate, {where}"
            out.setdefault(seed, {})[name] = (None, 0) if r is None else (r["rate"], r["n"])
    return out


def spread(per_seed: dict[str, dict[str, tuple[Any, Any]]]) -> dict[str, dict[str, Any]]:
    """Per metric: each seed's value and n, and mean, min and max over the seeds whose value
    is defined (``n_seeds`` of them)."""
    names = list(dict.fromkeys(name for metrics in per_seed.values() for name in metrics))
    out = {}
    for name in names:
        values = {s: m.get(name, (None, None))[0] for s, m in per_seed.items()}
        defined = [float(v) for v in values.values() if v is not None]
        out[name] = {
            "values": values,
            "n": {s: m.get(name, (None, None))[1] for s, m in per_seed.items()},
            "n_seeds": len(defined),
            "mean": sum(defined) / len(defined) if defined else None,
            "min": min(defined) if defined else None,
            "max": max(defined) if defined else None,
        }
    return out


def seed_spread(results: dict[str, Any]) -> dict[str, Any]:
    """``{"probes": ..., "rates": ...}``: :func:`spread` of the probe metrics of every seed
    in ``results["by_seed"]`` and of the judged rates in ``results["rates"]``."""
    layers = results["config"]["layers"]
    by_seed = results.get("by_seed") or {}
    return {
        "seeds": list(by_seed),
        "probes": spread({s: probe_seed_metrics(r, layers) for s, r in by_seed.items()}),
        "rates": spread(rate_seed_metrics(results.get("rates") or {})),
    }
