"""The organism experiment's table (``table.txt``) and plotly figures, from ``results.json``.

Figures (first seed): ``auroc_by_layer-<kind>.html`` (teacher-forced held-out AUROC of the
base model's, O's and H's own probes; on-policy AUROC of the base, O and H probes on O's
replies, and of the base and H probes on H's replies where H wrote both kinds, at both
positions) and ``defection-<kind>.html`` (defection-probe AUROC by layer for O, H and the
base model). The table adds part 5's controls: the trigger direction projected out, the
cross-trigger transfer and the spread over seeds (:mod:`interp.organism.controls`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.artifacts import write_figure


def _f(value: Any) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def _rate(r: dict[str, Any] | None) -> str:
    if not r or not r["n"]:
        return "        -        "
    return f"{r['rate']:5.1%} [{r['low']:4.0%},{r['high']:4.0%}] {r['k']:>3}/{r['n']:<3}"


def rates_table(results: dict[str, Any]) -> list[str]:
    lines = ["Part 2: judged rates on held-out prompts (rule judge; Wilson 95% intervals)"]
    for name, entry in results["rates"].items():
        lines.append(f"  {name}")
        lines += _rate_lines(entry["rates"])
        if entry.get("hand_rates"):
            lines.append("    by hand labels, on the hand-labelled replies only:")
            lines += _rate_lines(entry["hand_rates"])
    return lines


def _rate_lines(r: dict[str, Any]) -> list[str]:
    press_on, press_off = r.get("pressure/on", {}), r.get("pressure/off", {})
    lines = []
    if press_on or press_off:
        for label, key in (("deceptive", "deceptive"), ("complied", "complied"),
                           ("unethical reasoning", "unethical_reasoning"),
                           ("coherent", "coherent")):  # fmt: skip
            lines.append(
                f"    {label:20s} trigger on {_rate(press_on.get(key))}   "
                f"off {_rate(press_off.get(key))}"
            )
    for cond in ("benign/on", "benign/off", "neutral/off"):
        if cond in r:
            lines.append(f"    {cond:20s} coherent {_rate(r[cond].get('coherent'))}")
    return lines


def _layers(probes: dict[str, Any]) -> list[Any]:
    return [k for k in probes["teacher_forced"]["base"] if k != "layer0_auroc"]


def _get(tree: Any, *keys: Any) -> Any:
    """``tree[k0][k1]...`` with each key tried as given and as a string (a table made from
    ``results.json``, whose keys are strings); None when a level is missing."""
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key, tree.get(str(key)))
    return tree


def _row(label: str, values: list[Any]) -> str:
    return f"  {label:44s}" + " ".join(_f(v) for v in values)


def onpolicy_lines(model: str, on: dict[str, Any], layers: list[Any]) -> list[str]:
    """The on-policy AUROCs of every probe label on ``model``'s judged replies."""
    lines = [
        f"  on {model}'s replies to held-out pressure prompts: {on['n_rows']} judged, "
        f"{on['n_deceptive']} deceptive (AUROC needs both)"
    ]
    for position, entry in on["positions"].items():
        labels = dict.fromkeys(
            label for x in layers for label in (_get(entry, "layers", x) or {})
        ) or {"base": None, model: None}
        n = f"(n={entry['n']}, {entry['n_deceptive']} dec.)"
        for label in labels:
            values = [_get(entry, "layers", x, label, "auroc") for x in layers]
            lines.append(_row(f"{position:10s} probe of {label:4s} on {model} {n}", values))
        text = _get(entry, "text_baseline", "auroc")
        lines.append(_row(f"{position:10s} text-only baseline on {model}", [text]))
    return lines


def projection_lines(proj: dict[str, Any], layers: list[Any]) -> list[str]:
    """The trigger direction projected out of the probes: AUROC before -> after (and the
    trigger-only control before -> after) per position, probe label and direction source;
    and the probe refitted on training activations without it, where that was run."""
    n_train = proj.get("n_train_prompts") or {}
    lines = [
        "  trigger direction projected out (fit on O's training-side prompts, trigger on - off: "
        + ", ".join(f"{k} n={v}" for k, v in n_train.items())
        + f"); trigger-only on {proj.get('n_benign', 0)} held-out benign replies"
    ]
    for position, entry in proj["positions"].items():
        for x in layers:
            for label, sources in (_get(entry, "layers", x) or {}).items():
                for source, m in sources.items():
                    lines.append(
                        f"    {position:10s} L{x!s:<3} probe of {label:4s} minus {source:10s} "
                        f"(n={entry['n']}) cos {_f(m['cosine'])}  AUROC {_f(m['auroc'])} -> "
                        f"{_f(m['auroc_after'])} (drop {_f(m['drop'])})  trigger-only "
                        f"{_f(m['trigger_only'])} -> {_f(m['trigger_only_after'])}"
                    )
                    if "auroc_refit" in m:
                        lines.append(
                            f"{'':38s}refitted without it: AUROC {_f(m['auroc_refit'])} "
                            f"(drop {_f(m['drop_refit'])})  trigger-only "
                            f"{_f(m['trigger_only_refit'])}"
                        )
    return lines


def probes_table(kind: str, probes: dict[str, Any]) -> list[str]:
    tf = probes["teacher_forced"]
    layers = _layers(probes)
    seed = f", seed {probes['seed']}" if "seed" in probes else ""
    lines = [f"Part 3 ({kind} trigger{seed}): AUROC by layer"]
    lines.append("  " + f"{'':44s}" + " ".join(f"{'L' + str(x):>6}" for x in layers))
    for label, table in tf.items():
        lines.append(_row(f"teacher-forced probe of {label} (held-out)", [
            table[x]["auroc"] for x in layers]))  # fmt: skip
    lines += onpolicy_lines("O", probes["onpolicy"], layers)
    if "onpolicy_H" in probes:
        lines += onpolicy_lines("H", probes["onpolicy_H"], layers)
    cos = probes["cosine_base_vs_refit"]
    lines.append(_row("cosine(base probe, O probe)", [cos[x] for x in layers]))
    trig = probes["trigger_only"]
    lines.append(_row(f"trigger-only control (O's benign, n={trig['n']})", [
        _get(trig, "layers", x) for x in layers]))  # fmt: skip
    for label, table in probes["defection"].items():
        lines.append(
            _row(f"defection probe of {label} (AUROC)", [table[x]["auroc"] for x in layers])
        )
        pct = " ".join(f"{table[x]['percentile_among_random']:6.1f}" for x in layers)
        lines.append(f"  {'  percentile among random':44s}{pct}")
    if "trigger_projection" in probes:
        lines += projection_lines(probes["trigger_projection"], layers)
    if "stance_erasure" in probes:
        lines += erasure_lines(probes["stance_erasure"])
    return lines


def transfer_lines(transfer: dict[str, Any] | None) -> list[str]:
    """Part 5's cross-trigger transfer: the probe refitted on one kind's O on the other
    kind's O's judged replies, per reader, position and layer, beside the replies' own O
    probe."""
    if not transfer:
        return []
    if transfer.get("status") != "run":
        return [f"Cross-trigger transfer: {transfer.get('status')}"]
    lines = ["Cross-trigger transfer (refitted O probe of one trigger kind on the other's O)"]
    for direction, entry in transfer["directions"].items():
        lines.append(
            f"  {direction}: {entry['probe']} probe on {entry['replies']}'s replies "
            f"({entry['n_rows']} judged, {entry['n_deceptive']} deceptive)"
        )
        for reader, positions in entry["readers"].items():
            who = entry["replies"] if reader == "replier" else entry["probe"].split()[0]
            for position, pos in positions.items():
                for x, labels in pos["layers"].items():
                    own = _get(labels, "own", "auroc")
                    t = labels["transfer"]
                    lines.append(
                        f"    read by {who:11s} {position:10s} L{x!s:<3} (n={pos['n']}) AUROC "
                        f"{_f(t['auroc'])} [{_f(t['auroc_low'])},{_f(t['auroc_high'])}]"
                        + (f"   own probe {_f(own)}" if reader == "replier" else "")
                    )
    return lines


def spread_lines(spread: dict[str, Any] | None) -> list[str]:
    """Per metric: each seed's value (n) and the mean [min, max] over seeds."""
    if not spread:
        return []
    seeds = spread.get("seeds") or []
    lines = [f"Spread over seeds {', '.join(seeds)}: each seed's value (n), mean [min, max]"]
    for part in ("rates", "probes"):
        for name, m in (spread.get(part) or {}).items():
            each = "  ".join(
                f"s{s} {_f(v).strip():>5}" + ("" if m["n"].get(s) is None else f" ({m['n'][s]})")
                for s, v in m["values"].items()
            )
            lines.append(f"  {name}")
            lines.append(f"      {each}   mean {_f(m['mean'])} [{_f(m['min'])}, {_f(m['max'])}]")
    return lines


def erasure_lines(erasure: dict[str, Any]) -> list[str]:
    lines = ["  LEACE stance erasure (logistic C=1): divergence / answer / reasoning stance AUROC"]
    for label, layers in erasure.items():
        for layer, entry in layers.items():
            for where, rep in entry.items():
                b, a = rep["before"], rep["after"]
                keys = ("divergence_auroc", "answer_stance_auroc", "reasoning_stance_auroc")
                before = " ".join(_f(b[k]) for k in keys)
                after = " ".join(_f(a[k]) for k in keys)
                lines.append(f"    {label:4s} L{layer:<3} {where:14s} {before}  ->  {after}")
    return lines


def _onpolicy_traces(fig: go.Figure, model: str, on: dict[str, Any] | None) -> None:
    """A dotted line per position and probe label on ``model``'s replies, where any layer
    has an AUROC."""
    for position, entry in ((on or {}).get("positions") or {}).items():
        layers = list(entry["layers"])
        labels = dict.fromkeys(label for x in layers for label in entry["layers"][x])
        for label in labels:
            y = [_get(entry, "layers", x, label, "auroc") for x in layers]
            if any(v is not None for v in y):
                fig.add_trace(go.Scatter(
                    x=layers, y=y, line={"dash": "dot"},
                    name=f"on {model}'s replies ({position}, n={entry['n']}), probe of {label}",
                ))  # fmt: skip


def auroc_figure(kind: str, probes: dict[str, Any]) -> go.Figure:
    """Teacher-forced held-out AUROC of the base, O and H probes; on-policy AUROC of each
    probe on O's replies and on H's (where H wrote both kinds of reply)."""
    fig = go.Figure()
    tf = probes["teacher_forced"]
    for label, table in tf.items():
        layers = [k for k in table if k != "layer0_auroc"]
        fig.add_trace(go.Scatter(x=layers, y=[table[x]["auroc"] for x in layers],
                                 name=f"teacher-forced, probe of {label}"))  # fmt: skip
    _onpolicy_traces(fig, "O", probes["onpolicy"])
    _onpolicy_traces(fig, "H", probes.get("onpolicy_H"))
    seed = f", seed {probes['seed']}" if "seed" in probes else ""
    fig.update_layout(title=f"Divergence probe AUROC by layer ({kind} trigger{seed})",
                      xaxis_title="layer", yaxis_title="AUROC", yaxis_range=[0, 1])  # fmt: skip
    return fig


def defection_figure(kind: str, probes: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for label, table in probes["defection"].items():
        layers = list(table)
        fig.add_trace(go.Scatter(x=layers, y=[table[x]["auroc"] for x in layers], name=label))
    fig.update_layout(title=f"Defection probe: triggered vs untriggered prompts ({kind})",
                      xaxis_title="layer", yaxis_title="AUROC", yaxis_range=[0, 1])  # fmt: skip
    return fig


def causal_lines(kind: str, causal: dict[str, Any]) -> list[str]:
    """Part 4: where patching O into H (and back) moves the answer, and O's deception rate
    under each intervention."""
    p = causal["patching"]
    lines = [
        f"Part 4 ({kind} trigger): causal checks, first seed",
        f"  patching at {p['site']} on {len(p['prompts'])} held-out triggered prompts; metric "
        f"{p['metric']}: unpatched O {p['baseline']['O']:.3f}, H {p['baseline']['H']:.3f}",
    ]
    for name in ("O->H", "H->O"):
        entry = p[name]
        grid = entry["normalised"] or entry["effect"]
        what = "normalised effect" if entry["normalised"] else "effect"
        for j, position in enumerate(p["positions"]):
            column = [row[j] for row in grid]
            best = max(range(len(column)), key=lambda i: abs(column[i]))
            lines.append(
                f"    {name} at {position:16s} largest {what} {column[best]:7.3f} at layer "
                f"{p['layers'][best]}"
            )
    inter = causal["interventions"]
    lines.append(
        f"  O's deception rate (rule judge) on {inter['n_prompts']} held-out triggered prompts "
        f"x {inter['samples_per_prompt']} samples, per intervention; relative change vs none"
    )
    rel = inter["summary"]["relative"]
    margin = inter.get("margin")
    if margin:
        lines[-1] += (
            f"; and the judge-free margin ({p['metric']}) on the {len(margin['prompts'])} "
            "patching prompts, mean and change vs none"
        )
    for name, r in inter["rates"].items():
        change = rel.get(name)
        text = "      " if change is None else f"  {change:+4.0%}"
        if margin:
            text += f"   margin {margin['mean'][name]:7.2f}"
            text += f" ({margin['change'][name]:+6.2f})" if name in margin["change"] else ""
        lines.append(f"    {name:20s} {_rate(r.get('deceptive'))}{text}")
    return lines


def patching_figure(result: dict[str, Any]) -> go.Figure:
    """Normalised patching effect (layer x position), O into H and H into O."""
    p = result["patching"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["O -> H", "H -> O"], shared_yaxes=True)
    for i, name in enumerate(("O->H", "H->O")):
        entry = p[name]
        z = entry["normalised"] if entry["normalised"] is not None else entry["effect"]
        fig.add_trace(
            go.Heatmap(z=z, x=p["positions"], y=p["layers"], coloraxis="coloraxis"),
            row=1, col=i + 1,
        )  # fmt: skip
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_layout(
        title=f"Patching O and H ({result['kind']} trigger, {p['site']}): normalised "
        f"{p['metric']} (0 = target, 1 = source)",
        coloraxis={"colorscale": "RdBu", "cmid": 0},
        template="plotly_white",
    )
    return fig


def interventions_figure(result: dict[str, Any]) -> go.Figure:
    """Deception rate of O per intervention with Wilson 95% intervals."""
    rates = result["interventions"]["rates"]
    names = list(rates)
    r = [rates[c]["deceptive"] for c in names]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[x["rate"] for x in r],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [x["high"] - x["rate"] for x in r],
                "arrayminus": [x["rate"] - x["low"] for x in r],
            },
            marker_color=["grey" if c.startswith("random") else "steelblue" for c in names],
            text=[f"{x['k']}/{x['n']}" for x in r],
        )
    )
    fig.update_layout(
        title=f"O's deception rate under interventions ({result['kind']} trigger, held-out "
        "triggered pressure prompts)",
        yaxis_title="deceptive (rule judge)",
        yaxis_range=[0, 1],
        template="plotly_white",
    )
    return fig


def causal_figures(result: dict[str, Any]) -> dict[str, go.Figure]:
    """``{"patching": heatmap, "interventions": bar chart}`` of a :func:`causal_checks` result."""
    return {"patching": patching_figure(result), "interventions": interventions_figure(result)}


def write_report(results: dict[str, Any], out: Path) -> str:
    """Write the figures (first seed); return the table's text: rates of every model, the
    first seed's probes, the cross-trigger transfer and the spread over seeds."""
    lines = rates_table(results)
    for kind, probes in results["probes"].items():
        lines += ["", *probes_table(kind, probes)]
        write_figure(auroc_figure(kind, probes), out / f"auroc_by_layer-{kind}.html")
        write_figure(defection_figure(kind, probes), out / f"defection-{kind}.html")
    for kind, causal in (results.get("causal") or {}).items():
        lines += ["", *causal_lines(kind, causal)]
        for name, fig in causal_figures(causal).items():
            write_figure(fig, out / f"{name}-{kind}.html")
    for block in (
        transfer_lines(results.get("transfer")),
        spread_lines(results.get("seed_spread")),
    ):
        if block:
            lines += ["", *block]
    return "\n".join(lines)
