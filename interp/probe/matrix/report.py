"""The matrix run's table, figure and folder: ``table.txt``, ``matrix.html`` (plotly, self-
contained), ``matrix.json`` (every cell) and ``config.json`` (resolved config, model
fingerprint, library versions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.artifacts import library_versions, write_figure, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from interp.probe.matrix.results import MatrixCell, MatrixRun, SetSummary


def _num(value: float | None, width: int = 5) -> str:
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"


def _auroc(c: MatrixCell) -> str:
    if c.auroc is None:
        return f"{'-':>19}"
    return f"{c.auroc:.3f} [{c.auroc_low:.2f}, {c.auroc_high:.2f}]"


def _stances(c: MatrixCell) -> str:
    return ", ".join(f"{k} {_num(v).strip()}" for k, v in c.stances.items()) or "-"


def _matrix_block(run: MatrixRun, layer: int) -> list[str]:
    names = [s.name for s in run.sets]
    width = max(12, *(len(n) for n in names))
    lines = [f"AUROC at layer {layer} (rows: trained on; columns: tested on; diagonal: held-out)"]
    lines.append(f"{'':>{width}} | " + " | ".join(f"{n:>{width}}" for n in names))
    for train in names:
        cells = [run.cell(train, test, layer) for test in names]
        lines.append(f"{train:>{width}} | " + " | ".join(f"{_num(c.auroc, width)}" for c in cells))
    return lines


def _set_line(s: SetSummary) -> str:
    notes = [f"{s.n_positive} deceptive", f"{s.n_groups} groups", f"tokens {s.tokens}"]
    if s.n_marker_missing:
        notes.append(f"{s.n_marker_missing} without the marker (read whole)")
    if s.n_truncated:
        notes.append(f"{s.n_truncated} truncated")
    return f"{s.name} n={s.n} ({', '.join(notes)})"


def format_table(run: MatrixRun) -> str:
    """The printed table: a compact AUROC matrix per layer, then one line per cell with its
    interval, recall at the control threshold and the controls."""
    cfg = run.config
    head = [
        f"Cross-dataset probe matrix ({cfg.probe}, {cfg.site}) on {run.model_name}, {run.date}.",
        f"Threshold: 1% false positives on {run.control} ({run.control_n} transcripts).",
        "Sets: " + "; ".join(_set_line(s) for s in run.sets),
        "",
    ]
    for layer in cfg.layers:
        head += [*_matrix_block(run, layer), ""]
    head.append(
        f"{'layer':>5} | {'train':<22} | {'test':<22} | {'n':>5} | {'AUROC [95% CI]':<19} | "
        f"{'rec@1%':>6} | {'flag0':>5} | {'L0':>5} | {'rand':>5} | stances"
    )
    for c in run.cells:
        head.append(
            f"{c.layer:>5} | {c.train:<22} | {c.test:<22} | {c.n:>5} | {_auroc(c):<19} | "
            f"{_num(c.recall_at_1pct_control, 6)} | {_num(c.flagged_honest_at_1pct_control)} | "
            f"{_num(c.layer0_auroc)} | {_num(c.random_auroc_p95)} | {_stances(c)}"
        )
    head += [
        "",
        "rec@1%: deceptive replies above the threshold that flags 1% of the control set; flag0: "
        "honest replies above it; L0: the same probe fitted on token embeddings (layer 0); rand: "
        "95th percentile of random directions; stances: AUROC against a meta column alone.",
    ]
    return "\n".join(head)


def matrix_figure(run: MatrixRun) -> go.Figure:
    """AUROC heatmaps, one per layer, with recall at the control threshold in each cell."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [s.name for s in run.sets]
    layers = run.config.layers
    fig = make_subplots(rows=1, cols=len(layers), subplot_titles=[f"layer {la}" for la in layers])
    for k, layer in enumerate(layers, 1):
        grid = [[run.cell(tr, te, layer) for te in names] for tr in names]
        z = [[c.auroc for c in row] for row in grid]
        text = [
            [
                f"{_num(c.auroc).strip()}<br>rec {_num(c.recall_at_1pct_control).strip()}"
                for c in row
            ]
            for row in grid
        ]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=names,
                y=names,
                text=text,
                texttemplate="%{text}",
                zmin=0,
                zmax=1,
                colorscale="RdBu",
                showscale=k == len(layers),
            ),
            row=1,
            col=k,
        )
    fig.update_layout(
        title=f"Probe trained on (rows) x tested on (columns): AUROC, recall at 1% FPR on "
        f"control chat; {run.model_name}",
        template="plotly_white",
    )
    fig.update_yaxes(title_text="trained on", col=1)
    fig.update_xaxes(title_text="tested on")
    return fig


def save_matrix(run: MatrixRun) -> None:
    """Write the run folder (see the module notes)."""
    out = run.out_dir
    if out is None:
        raise ValueError("the run has no out_dir to save to")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "matrix.json", run.to_json())
    write_json_atomic(
        out / "config.json",
        {
            "config": run.config.to_dict(),
            "model_fingerprint": run.model_fingerprint,
            "versions": library_versions(),
        },
    )
    write_text_atomic(out / "table.txt", format_table(run) + "\n")
    write_figure(matrix_figure(run), out / "matrix.html")
