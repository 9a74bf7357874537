"""Figures of the text experiments (plotly)."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.stats import Rate


def follow_up_figure(
    by_condition: dict[str, dict[str, Rate]], model_name: str, judge_name: str = "rule"
) -> go.Figure:
    """Grouped bars per condition: undesired answers, reason-based deception and missing
    reasoning among the follow-up replies, with 95% Wilson error bars (conditions in the
    order of ``by_condition``)."""
    conditions = list(by_condition)
    fig = go.Figure()
    for key, label in [
        ("undesired", "undesired answer"),
        ("rbd", "reason-based deception"),
        ("missing_reasoning", "no reasoning"),
    ]:
        values = [by_condition[c][key] for c in conditions]
        fig.add_bar(
            name=label,
            x=conditions,
            y=[v.rate for v in values],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [v.high - v.rate for v in values],
                "arrayminus": [v.rate - v.low for v in values],
            },
        )
    fig.update_layout(
        barmode="group",
        template="plotly_white",
        yaxis_tickformat=".0%",
        title=f"Follow-up replies of {model_name} after each kind of first reply "
        f"({judge_name} judge, 95% Wilson intervals)",
        yaxis_title="share of follow-up replies",
        xaxis_title="assistant's reply to the pressure",
    )
    return fig
