"""Plotly figures of probe runs and weight differences."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from interp.train import ProbeRun
    from interp.weight_diff import WeightDiff


def auroc_figure(run: ProbeRun) -> go.Figure:
    """Held-out AUROC by layer with its controls (a bar chart when one layer was probed)."""
    layers = [r.layer for r in run.layers]
    probe = [r.test.metrics.auroc if r.test.metrics else None for r in run.layers]
    low = [r.test.metrics.auroc_low if r.test.metrics else None for r in run.layers]
    high = [r.test.metrics.auroc_high if r.test.metrics else None for r in run.layers]
    layer0 = run.layer0.metrics.auroc if run.layer0.metrics else None
    series = {
        "random direction (95th pct)": [r.random_auroc_p95 for r in run.layers],
        "answer stance": [r.test.answer_stance_auroc for r in run.layers],
        "reasoning stance": [r.test.reasoning_stance_auroc for r in run.layers],
    }
    title = (
        f"Divergence probe ({run.config.probe}, {run.config.site}, {run.config.tokens} tokens) "
        f"on {run.model_name}: held-out AUROC"
    )
    fig = go.Figure()
    if len(layers) == 1:
        names = ["probe", "layer-0 control", *series]
        values = [probe[0], layer0, *(v[0] for v in series.values())]
        fig.add_bar(
            x=names, y=values, text=[f"{v:.3f}" if v is not None else "n/a" for v in values]
        )
        fig.update_layout(xaxis_title=f"layer {layers[0]}")
    else:
        fig.add_scatter(
            x=layers + layers[::-1],
            y=high + low[::-1],
            fill="toself",
            line_width=0,
            name="probe 95% CI",
            opacity=0.2,
            hoverinfo="skip",
        )
        fig.add_scatter(x=layers, y=probe, mode="lines+markers", name="probe")
        for name, values in series.items():
            fig.add_scatter(x=layers, y=values, mode="lines", name=name, line_dash="dot")
        if layer0 is not None:
            fig.add_hline(y=layer0, line_dash="dash", annotation_text="layer-0 control")
        fig.update_layout(xaxis_title="layer")
    fig.add_hline(y=0.5, line_color="grey", line_width=1)
    fig.update_layout(
        title=title, yaxis_title="AUROC", yaxis_range=[0, 1.02], template="plotly_white"
    )
    return fig


def weight_diff_figure(diff: WeightDiff) -> go.Figure:
    """Heatmaps layer x matrix of the relative norm, effective rank and (when a probe was
    given) the probe's max |cos| with the top singular directions of each weight change."""
    panels = {"relative norm ||dW||/||W||": "relative_norm", "effective rank": "effective_rank"}
    if any(c.probe_max_cos is not None for c in diff.cells):
        panels[f"probe max|cos| (random: {diff.random_max_cos:.2f})"] = "probe_max_cos"
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels))
    for col, metric in enumerate(panels.values(), start=1):
        grid = diff.grid(metric)
        fig.add_heatmap(
            z=grid.tolist(),
            x=diff.matrices,
            y=diff.layers,
            colorscale="Viridis",
            colorbar={"x": col / len(panels) - 0.02, "len": 0.9, "thickness": 10},
            zmin=0,
            zmax=1 if metric == "probe_max_cos" else None,
            hovertemplate=f"layer %{{y}} %{{x}}<br>{metric} %{{z:.3g}}<extra></extra>",
            row=1,
            col=col,
        )
        fig.update_yaxes(title_text="layer" if col == 1 else None, row=1, col=col)
    fig.update_layout(
        title=f"Weight change {diff.variant or 'variant'} - {diff.base or 'base'}",
        template="plotly_white",
        height=max(400, 22 * len(diff.layers) + 150),
        width=400 * len(panels),
    )
    return fig
