"""The refusal-vs-rebuttal fine-tuning study: fine-tune a refusal-trained and a
rebuttal-trained variant of one model, then compare them with the base model: loss curves,
greedy replies to held-out pressure prompts, and the divergence probe's held-out AUROC per
layer.

Both variants are trained with one shared :class:`interp.finetune.FinetuneConfig` (only
``strategy`` differs), on the same prompts in the same order; they differ only in the answer
text (polite refusal vs explicit rebuttal). A variant that already exists with the same
settings is reused. Each model (base, refusal, rebuttal) then

- answers ``--n-prompts`` pressure prompts of scenarios held out from fine-tuning (greedy);
- gets a divergence probe per layer (``interp.probe.train_probe``, built-in consistency set),
  whose held-out AUROC is tabulated next to the layer-0 control.

With ``--max-scenarios`` the probe uses a random subset of scenarios and its own split of
them, so some probe test scenarios may have been fine-tuning scenarios: the overlap is printed
and saved. Without it (all 48 scenarios) the probe's test scenarios are exactly the ones held
out from fine-tuning.

Outputs under ``--out`` (default ``<cache>/experiments/finetune_refusal_vs_rebuttal/``):
``losses.html`` (plotly), ``samples/<model>.jsonl`` (generations), ``probes/<model>/`` (probe
runs), ``results.json`` (resolved config, manifests, samples, AUROC table) and ``table.txt``.

Run: ``python experiments/finetune_refusal_vs_rebuttal.py`` (default model, 2-core CPU:
about 8 minutes of training per variant uncontended, then about 2-3 minutes per model for
samples and probes with the defaults).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from interp.artifacts import write_figure, write_json_atomic, write_text_atomic
from interp.config import ModelOptions, model_options
from interp.data.scenarios import load_bank
from interp.data.split import split_bank
from interp.finetune import FinetuneConfig, FinetuneResult, finetune
from interp.models import DEFAULT_MODEL, load_model
from interp.paths import cache_root
from interp.probe.config import ProbeConfig
from interp.probe.pipeline import train_probe
from interp.text.generation import GenerationConfig, Prompt, generate

STRATEGIES = ("refusal", "rebuttal")


@dataclass
class ExperimentConfig(ModelOptions):
    """Fine-tune refusal and rebuttal variants and compare them with the base model."""

    base: str = field(default=DEFAULT_MODEL, metadata={"help": "model to fine-tune"})
    method: str = field(default="lora", metadata={"help": "lora or full"})
    steps: int = field(default=FinetuneConfig.steps, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=FinetuneConfig.batch_size, metadata={"help": "per step"})
    lr: float | None = field(default=None, metadata={"help": "learning rate (method default)"})
    seed: int = field(default=0, metadata={"help": "fine-tuning seed"})
    layers: tuple[int, ...] = field(default=(7, 14, 21), metadata={"help": "layers to probe"})
    max_scenarios: int | None = field(
        default=24, metadata={"help": "probe on this many scenarios ('none': all 48)"}
    )
    n_prompts: int = field(default=3, metadata={"help": "held-out prompts to answer"})
    max_new_tokens: int = field(default=96, metadata={"help": "length cap of sample replies"})
    out: str | None = field(default=None, metadata={"help": "output folder"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        super().__post_init__()

    def finetune_config(self, strategy: str) -> FinetuneConfig:
        return FinetuneConfig(
            base=self.base, strategy=strategy, method=self.method, steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, seed=self.seed, device=self.device,
            progress=self.progress,
        )  # fmt: skip


def loss_figure(results: dict[str, FinetuneResult]) -> go.Figure:
    fig = go.Figure()
    for strategy, r in results.items():
        fig.add_trace(go.Scatter(y=r.losses, x=list(range(1, len(r.losses) + 1)), name=strategy))
    fig.update_layout(
        title="Fine-tuning loss (assistant tokens)", xaxis_title="step", yaxis_title="loss"
    )
    return fig


def held_out_prompts(n: int) -> list[Prompt]:
    """Pressure prompts of ``n`` held-out scenarios, one per domain while domains last."""
    bank = {s.id: s for s in load_bank()}
    _, test_ids = split_bank(list(bank.values()))
    chosen: list[str] = []
    for sid in sorted(test_ids, key=lambda i: (bank[i].domain, i)):
        if bank[sid].domain not in {bank[c].domain for c in chosen} and len(chosen) < n:
            chosen.append(sid)
    chosen += [s for s in sorted(test_ids) if s not in chosen][: n - len(chosen)]
    return [
        Prompt(
            id=sid,
            group=sid,
            messages=(
                {"role": "system", "content": bank[sid].system},
                {"role": "user", "content": bank[sid].pressure},
            ),
            meta={"domain": bank[sid].domain},
        )
        for sid in chosen
    ]


def table(aurocs: dict[str, dict[str, float | None]], layers: Sequence[int]) -> str:
    def cell(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.3f}"

    names = list(aurocs)
    width = max(len(n) for n in names)
    head = (
        f"{'model':<{width}} | " + " | ".join(f"{'L' + str(x):>6}" for x in layers) + " | layer 0"
    )
    rows = [
        f"{n:<{width}} | "
        + " | ".join(cell(aurocs[n][f"L{x}"]) for x in layers)
        + f" | {cell(aurocs[n]['layer0'])}"
        for n in names
    ]
    return "\n".join(["Held-out divergence-probe AUROC", head, *rows])


def sample_replies(
    config: ExperimentConfig, models: dict[str, str], prompts: list[Prompt], out: Path
) -> dict[str, dict[str, str]]:
    """Each model's greedy reply to each held-out prompt (label -> prompt id -> reply),
    printed side by side."""
    gen = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=0.0, batch_size=8)
    samples: dict[str, dict[str, str]] = {}
    for label, name in models.items():  # samples first: they take a minute, probes longer
        model = load_model(name, **model_options(config))
        replies = generate(model, prompts, gen, out / "samples" / f"{label}.jsonl", config.progress)
        samples[label] = {t.group: t.reply for t in replies}
        del model
    for p in prompts:
        print(f"\n== {p.id}: {p.messages[-1]['content'][:160]}")
        for label in models:
            print(f"-- {label}: {samples[label][p.id][:400]}")
    return samples


def probe_models(
    config: ExperimentConfig, models: dict[str, str], out: Path, finetune_train: set[str]
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """A divergence probe per layer on each model: held-out AUROCs (label -> layer -> AUROC)
    and what each probe run was (its test scenarios and which of them fine-tuning saw)."""
    aurocs: dict[str, dict[str, float | None]] = {}
    probe_runs: dict[str, Any] = {}
    for label, name in models.items():
        model = load_model(name, **model_options(config))
        probe = train_probe(
            ProbeConfig(
                model=name, layers=config.layers, max_scenarios=config.max_scenarios,
                control_dataset=None, **model_options(config), progress=config.progress,
                out=str(out / "probes" / label),
            ),
            model=model,
        )  # fmt: skip
        aurocs[label] = {
            f"L{r.layer}": r.test.metrics.auroc if r.test.metrics else None for r in probe.layers
        }
        aurocs[label]["layer0"] = probe.layer0.metrics.auroc if probe.layer0.metrics else None
        probe_runs[label] = {
            "model": name,
            "fingerprint": model.fingerprint,
            "test_scenarios": probe.test_groups,
            "test_scenarios_seen_in_finetuning": sorted(set(probe.test_groups) & finetune_train),
            "out": str(probe.out_dir),
        }
        del model
    return aurocs, probe_runs


def run(config: ExperimentConfig) -> dict[str, Any]:
    out = Path(config.out or cache_root() / "experiments" / "finetune_refusal_vs_rebuttal")
    started = time.perf_counter()
    trained = {s: finetune(config.finetune_config(s)) for s in STRATEGIES}
    out.mkdir(parents=True, exist_ok=True)
    write_figure(loss_figure(trained), out / "losses.html")
    for r in trained.values():
        print(f"{r.name}: loss {r.losses[0]:.3f} -> {r.losses[-1]:.3f}, {r.manifest['wall_s']} s")

    models = {"base": config.base, **{s: r.name for s, r in trained.items()}}
    prompts = held_out_prompts(config.n_prompts)
    finetune_train = set(trained["refusal"].manifest["data"]["train_scenarios"])
    samples = sample_replies(config, models, prompts, out)
    aurocs, probe_runs = probe_models(config, models, out, finetune_train)

    text = table(aurocs, config.layers)
    overlap = probe_runs["base"]["test_scenarios_seen_in_finetuning"]
    text += (
        f"\nProbe test scenarios: {len(probe_runs['base']['test_scenarios'])}, of which "
        f"{len(overlap)} were fine-tuning scenarios"
    )
    print(text)
    results = {
        "config": asdict(config),
        "finetune": {
            s: {
                "name": r.name,
                "config": r.manifest["config"],
                "wall_s": r.manifest["wall_s"],
                "losses": r.losses,
                "fingerprint": r.manifest["fingerprint"],
                "base_fingerprint": r.manifest["base_fingerprint"],
                "data_hash": r.manifest["data"]["hash"],
                "skipped": r.skipped,
            }
            for s, r in trained.items()
        },
        "samples": {
            p.id: {"prompt": p.messages[-1]["content"], **{k: samples[k][p.id] for k in models}}
            for p in prompts
        },
        "auroc": aurocs,
        "probes": probe_runs,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "table.txt", text + "\n")
    print(f"\nWrote {out}/results.json, table.txt, losses.html")
    return results
