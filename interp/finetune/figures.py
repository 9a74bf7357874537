"""Plotly figure of a weight difference (fine-tuned variant minus base)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from interp.finetune.weight_diff import WeightDiff


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
