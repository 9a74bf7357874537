"""Writing a probe run to disk and printing it as a table.

A run folder holds ``config.json`` (the resolved config, model fingerprint, dataset hash
and library versions), ``metrics.json``, ``table.txt``, ``auroc.html`` (plotly) and
``probes/L<layer>/`` (safetensors + JSON per probe).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from interp.artifacts import (
    library_versions,
    write_figure,
    write_json_atomic,
    write_text_atomic,
)

if TYPE_CHECKING:
    from interp.probe.results import ProbeRun, SetReport


def _f(value: float | None, digits: int = 3) -> str:
    return "  -  " if value is None else f"{value:.{digits}f}"


def _auroc_text(rep: SetReport) -> str:
    m = rep.metrics
    return "  -" if m is None else f"{m.auroc:.3f} [{m.auroc_low:.2f}, {m.auroc_high:.2f}]"


def _set_row(label: str, rep: SetReport, random_mean: float | None = None) -> str:
    m, auc = rep.metrics, _auroc_text(rep)
    return (
        f"{label:>9} | {auc:>19} | {_f(m and m.accuracy)} | {_f(m and m.recall_at_1pct_fpr)} | "
        f"{_f(random_mean)} | {_f(rep.answer_stance_auroc)} | {_f(rep.reasoning_stance_auroc)}"
    )


HEADER = (
    "    layer |  AUROC [95% CI]     |  acc  | rec@1% | random | answer | reasoning\n"
    "          |                     |       |  FPR   |  dir.  | stance | stance"
)


def _c_line(run: ProbeRun) -> str:
    if run.config.probe != "logistic":
        return ""
    if run.config.c is not None:
        return f"Logistic C = {run.config.c} (given)."
    chosen = ", ".join(f"L{r.layer}: {r.c:g}" for r in run.layers)
    return (
        f"Logistic C chosen per layer by 4-fold cross-validation over training scenarios: "
        f"{chosen} (layer 0: {run.layer0_c:g})."
    )


def _train_counts_line(run: ProbeRun) -> list[str]:
    """The training set's odd replies, as the eval set's are reported (none for a run saved
    before they were counted)."""
    if run.n_answer_missing is None or run.n_truncated is None:
        return []
    return [
        f"Training set {run.config.dataset} ({run.n_transcripts} transcripts; "
        f"{run.n_answer_missing} without an 'Answer:' marker, read whole; {run.n_empty} empty; "
        f"{run.n_truncated} truncated)."
    ]


def _arrow(before: float | None, after: float | None) -> str:
    return f"{_f(before)} -> {_f(after)}"


def _erasure_row(label: str, where: str, before: SetReport, after: SetReport) -> str:
    divergence = f"{_auroc_text(before):>19} -> {_auroc_text(after):>19}"
    return (
        f"{label:>9} | {where:<8} | {divergence:>42} | "
        f"{_arrow(before.answer_stance_auroc, after.answer_stance_auroc)} | "
        f"{_arrow(before.reasoning_stance_auroc, after.reasoning_stance_auroc)}"
    )


def _erasure_lines(run: ProbeRun) -> list[str]:
    """Divergence and both stance AUROCs before and after stance erasure (none without it)."""
    before = run.before_erasure
    if before is None:
        return []
    lines = [
        "",
        "Stance erasure, before -> after (before: the same run's fit on un-erased "
        "activations, as without --erase-stances):",
        f"    layer | set      | {'divergence AUROC [95% CI], before -> after':^42} | "
        "answer stance  | reasoning stance",
    ]
    for r in run.layers:
        lines.append(_erasure_row(str(r.layer), "held-out", before.result(r.layer).test, r.test))
    lines.append(_erasure_row("layer 0", "held-out", before.layer0, run.layer0))
    for r in run.layers:
        old = before.result(r.layer).eval
        if r.eval is not None and old is not None:
            lines.append(_erasure_row(str(r.layer), "eval set", old, r.eval))
    if run.config.probe == "logistic" and run.config.c is None:
        chosen = ", ".join(f"L{r.layer}: {r.c:g}" for r in before.layers)
        lines.append(f"Logistic C before erasure: {chosen} (layer 0: {before.layer0_c:g}).")
    return lines


def _erasure_note(run: ProbeRun) -> list[str]:
    if run.before_erasure is None:
        return []
    return [
        "Stances erased (--erase-stances): every figure below reads activations with the answer "
        "and reasoning stances erased (LEACE, one eraser per hook fitted on the training "
        "scenarios); before -> after at the end."
    ]


def format_table(run: ProbeRun) -> str:
    """The results beside their controls, with one line on what each column means."""
    cfg = run.config
    test = run.layers[0].test
    lines = [
        f"Probe '{cfg.probe}' on {run.model_name} ({cfg.site}, mean over {cfg.tokens} tokens), "
        f"trained on {len(run.train_groups)} scenarios, tested on {len(run.test_groups)} held-out "
        f"scenarios ({test.n} transcripts).",
        _c_line(run),
        *_train_counts_line(run),
        *_erasure_note(run),
        "",
        "Held-out scenarios (label: answer diverges from reasoning):",
        HEADER,
    ]
    lines += [_set_row(str(r.layer), r.test, r.random_auroc_p95) for r in run.layers]
    lines.append(_set_row("layer 0", run.layer0) + "   <- control: probe on token embeddings")
    if any(r.control_recall is not None for r in run.layers):
        lines += ["", f"Threshold at 1% false positives on ordinary chat ({cfg.control_dataset}):"]
        lines += [
            f"  layer {r.layer}: catches {r.control_recall:.1%} of held-out divergent replies, "
            f"flags {r.control_flagged_consistent:.1%} of held-out consistent ones"
            for r in run.layers
            if r.control_recall is not None
        ]
    evals = [r for r in run.layers if r.eval is not None]
    if evals:
        e = evals[0].eval
        assert e is not None
        lines += [
            "",
            f"Eval set {cfg.eval_dataset} ({e.n} transcripts; {e.n_answer_missing} without an "
            f"'Answer:' marker, read whole; {e.n_truncated} truncated):",
            HEADER,
        ]
        lines += [_set_row(str(r.layer), r.eval) for r in evals if r.eval is not None]
    lines += _erasure_lines(run)
    lines += [
        "",
        "AUROC: held-out scenarios, 95% CI by scenario bootstrap. random dir.: 95th percentile "
        f"of max(AUROC, 1 - AUROC) over {cfg.n_random} random directions (how far chance gets).",
        "answer/reasoning stance: the trained probe's AUROC against 'answer complies' and "
        "'reasoning is ethical' alone;",
        "a probe that reads divergence (not one stance) is near 0.5 on both. Layer 0 near 0.5 "
        "means the wording does not leak the label.",
    ]
    return "\n".join(lines)


def save_run(run: ProbeRun) -> None:
    from interp.probe.figures import auroc_figure

    out = run.out_dir
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    for layer, probe in run.probes.items():
        probe.save(out / "probes" / f"L{layer}")
    write_json_atomic(
        out / "config.json",
        {
            "config": run.config.to_dict(),
            "model": run.model_name,
            "model_fingerprint": run.model_fingerprint,
            "model_dtype": run.model_dtype,  # part of the run identity (check_run_folder)
            "dataset_hash": run.dataset_hash,
            "versions": library_versions(),
        },
    )
    metrics = run.to_json()
    write_json_atomic(out / "metrics.json", metrics)
    if run.config.json:
        write_json_atomic(Path(run.config.json), metrics)
    write_text_atomic(out / "table.txt", format_table(run) + "\n")
    write_figure(auroc_figure(run), out / "auroc.html")
