"""Plotly figures of probe runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:
    from interp.probe.results import ProbeRun


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
