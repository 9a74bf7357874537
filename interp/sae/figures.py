"""Plotly figures of an SAE feature analysis."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from interp.sae.features import FeatureRanking
from interp.sae.intervene import InterventionResult


def feature_auroc_figure(ranking: FeatureRanking, title: str) -> go.Figure:
    """Train and held-out AUROC (oriented by the training direction) of the top features."""
    names = [f"f{s.feature}{'+' if s.direction > 0 else '-'}" for s in ranking.top]
    fig = go.Figure()
    fig.add_bar(
        x=names,
        y=[max(s.train_auroc, 1 - s.train_auroc) for s in ranking.top],
        name="train scenarios",
    )
    fig.add_bar(x=names, y=[s.test_auroc_oriented for s in ranking.top], name="held-out")
    fig.add_hline(y=0.5, line_dash="dot")
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis_title="AUROC (oriented; + = higher on divergent)",
        yaxis_range=[0.3, 1.0],
    )
    return fig


def probe_comparison_figure(ranking: FeatureRanking, title: str) -> go.Figure:
    """Held-out AUROC of sparse probes on the top-k features vs the dense probe."""
    ks = [p.k for p in ranking.probes]
    fig = go.Figure()
    fig.add_scatter(
        x=ks,
        y=[p.sparse_test_auroc for p in ranking.probes],
        mode="lines+markers",
        name="sparse probe (top-k SAE features)",
    )
    if ranking.probes:
        fig.add_hline(
            y=ranking.probes[0].dense_test_auroc,
            line_dash="dash",
            annotation_text=f"dense probe {ranking.probes[0].dense_test_auroc:.3f}",
        )
    fig.add_hline(y=0.5, line_dash="dot")
    fig.update_layout(
        title=title, xaxis_title="k features", xaxis_type="log", yaxis_title="held-out AUROC"
    )
    return fig


def intervention_figure(results: Sequence[InterventionResult], title: str) -> go.Figure:
    """Mean change of log p(comply) - log p(refuse) per feature and scale (+- 1 s.d.)."""
    fig = go.Figure()
    for scale in sorted({r.scale for r in results}):
        rs = [r for r in results if r.scale == scale]
        fig.add_bar(
            x=[f"f{r.feature}" for r in rs],
            y=[r.change for r in rs],
            error_y={"type": "data", "array": [r.change_sd for r in rs]},
            name=f"scale {scale:g}",
        )
    fig.update_layout(
        title=title, barmode="group", yaxis_title="change of log p(comply) - log p(refuse)"
    )
    return fig
