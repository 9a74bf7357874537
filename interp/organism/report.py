"""The organism experiment's table (``table.txt``) and plotly figures, from ``results.json``.

Figures: ``auroc_by_layer-<kind>.html`` (teacher-forced held-out AUROC of the base model's,
O's and H's own probes, and on-policy AUROC on O's replies of the base probe and O's
refitted probe at both positions) and ``defection-<kind>.html`` (defection-probe AUROC by
layer for O, H and the base model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

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
        r = entry["rates"]
        press_on, press_off = r.get("pressure/on", {}), r.get("pressure/off", {})
        lines.append(f"  {name}")
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


def probes_table(kind: str, probes: dict[str, Any]) -> list[str]:
    tf, on = probes["teacher_forced"], probes["onpolicy"]
    layers = [k for k in tf["base"] if k != "layer0_auroc"]
    lines = [f"Part 3 ({kind} trigger): AUROC by layer"]
    lines.append("  " + f"{'':34s}" + " ".join(f"{'L' + str(x):>6}" for x in layers))
    for label, table in tf.items():
        row = [_f(table[x]["auroc"]) for x in layers]
        lines.append(f"  teacher-forced probe of {label:10s}" + " ".join(row))
    lines.append(
        f"  on O's replies: {on['n_rows']} judged, {on['n_deceptive']} deceptive (AUROC needs both)"
    )
    for position, entry in on["positions"].items():
        for label in ("base", "O"):
            row = [_f((entry["layers"].get(x) or {}).get(label, {}).get("auroc")) for x in layers]
            lines.append(f"  {position:10s} probe of {label:4s} on O      " + " ".join(row))
        text = (entry.get("text_baseline") or {}).get("auroc")
        lines.append(f"  {position:10s} text-only baseline      {_f(text)}")
    cos = probes["cosine_base_vs_refit"]
    lines.append("  cosine(base probe, O probe)        " + " ".join(_f(cos[x]) for x in layers))
    trig = probes["trigger_only"]["layers"]
    lines.append(
        "  trigger-only control (benign)      " + " ".join(_f(trig.get(x)) for x in layers)
    )
    for label, table in probes["defection"].items():
        aurocs = " ".join(_f(table[x]["auroc"]) for x in layers)
        pct = " ".join(f"{table[x]['percentile_among_random']:6.1f}" for x in layers)
        lines.append(f"  defection probe of {label:4s} (AUROC)    {aurocs}")
        lines.append(f"    percentile among random           {pct}")
    if "stance_erasure" in probes:
        lines += erasure_lines(probes["stance_erasure"])
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


def auroc_figure(kind: str, probes: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    tf = probes["teacher_forced"]
    for label, table in tf.items():
        layers = [k for k in table if k != "layer0_auroc"]
        fig.add_trace(go.Scatter(x=layers, y=[table[x]["auroc"] for x in layers],
                                 name=f"teacher-forced, probe of {label}"))  # fmt: skip
    for position, entry in probes["onpolicy"]["positions"].items():
        layers = list(entry["layers"])
        for label in ("base", "O"):
            fig.add_trace(go.Scatter(
                x=layers, y=[entry["layers"][x][label]["auroc"] for x in layers],
                name=f"on O's replies ({position}), probe of {label}", line={"dash": "dot"},
            ))  # fmt: skip
    fig.update_layout(title=f"Divergence probe AUROC by layer ({kind} trigger)",
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


def write_report(results: dict[str, Any], out: Path) -> str:
    """Write the figures; return the table's text."""
    lines = rates_table(results)
    for kind, probes in results["probes"].items():
        lines += ["", *probes_table(kind, probes)]
        write_figure(auroc_figure(kind, probes), out / f"auroc_by_layer-{kind}.html")
        write_figure(defection_figure(kind, probes), out / f"defection-{kind}.html")
    return "\n".join(lines)
