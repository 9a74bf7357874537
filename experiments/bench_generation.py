"""Benchmark: generation through :func:`interp.text.generation.generate` against a bare
Hugging Face ``generate``.

Three paths, in one process, on the same prompts and settings (greedy, the same
``--max-new-tokens`` and repetition penalty, batches of ``--batch-size`` prompts of similar
length, left padding, key-value cache):

- ``hf``: a *separate* plain copy of the model (:func:`interp.models.load_hf_model`: booting
  the bridge rewires its own copy in place), ``hf_model.generate`` on the pre-tokenised,
  left-padded batches; nothing else is timed;
- ``interp``: ``generate(model, prompts, config, out_path)`` end to end into a fresh file
  (chat template, tokenising, batching, writing and syncing the JSONL file): generation on
  the plain Hugging Face model inside the bridge;
- ``bridge``: the same call inside ``model.bridge.hooks(...)`` with one hook that does
  nothing, so that generation runs through the bridge's components and hook points (the
  path every generation took before the plain model was used; hooks for steering or
  ablation still take it).

A warm-up batch runs through each path first. Then the paths run ``--repeats`` times in
rotating order and the median of each is reported, in new tokens per second (tokens of each
reply up to and including its end-of-turn token, as ``generate`` counts them). The replies of
the three paths are compared (text, length, why they stopped): greedy decoding must give the
same replies on every path. ``RATIO interp/hf`` (target >= 0.95) and ``RATIO interp/bridge``
are the numbers to read. Timings are wall-clock and noisy on a shared CPU: compare ratios from
one run only. The same ratios by this process's CPU time are printed beside them; on a CPU
shared with other work they move much less than wall-clock ones (run with ``--threads 1`` there,
so that CPU time counts no threads waiting for a core).

Defaults (default model, 16 prompts in batches of 8, 64 new tokens, 3 repeats) take a few
minutes on an idle 2-core CPU and several times that on a busy one. Quick check of the
mechanics:
``python experiments/bench_generation.py --model tiny-random --prompts 3 --batch-size 2
--max-new-tokens 4 --repeats 1``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.benchmarks import timed, write_result
from interp.cli import run_cli
from interp.config import ConfigError
from interp.data.datasets import build_consistency
from interp.data.padding import pad_left
from interp.hooks import hook_name
from interp.models import DEFAULT_MODEL, LoadedModel, load_hf_model, load_model
from interp.text.generation import (
    GenerationConfig,
    Prompt,
    encode_prompts,
    generate,
    hf_generate_kwargs,
    length_batches,
    stop_token_ids,
)

PATHS = ("hf", "interp", "bridge")


@dataclass
class GenerationBenchConfig:
    """Time interp's generate against a bare Hugging Face generate and the bridge path."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec, as for load_model"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, mps"})
    prompts: int = field(default=16, metadata={"help": "prompts (one per scenario, up to 48)"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate call"})
    max_new_tokens: int = field(default=64, metadata={"help": "new tokens per reply at most"})
    repetition_penalty: float = field(
        default=GenerationConfig.repetition_penalty, metadata={"help": "1.0 = none"}
    )
    repeats: int = field(default=3, metadata={"help": "timed runs of each path (median)"})
    threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads", "default_text": "torch's choice"}
    )
    out: str | None = field(
        default=None,
        metadata={"help": "JSON results", "default_text": "<cache>/benchmarks/generation.json"},
    )

    def __post_init__(self) -> None:
        for name in ("prompts", "batch_size", "max_new_tokens", "repeats", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        if self.prompts > 48:
            raise ConfigError(f"--prompts {self.prompts}: builtin:consistency has 48 scenarios")

    def generation(self) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            batch_size=self.batch_size,
        )


def scenario_prompts(count: int) -> list[Prompt]:
    """The first ``count`` scenarios of builtin:consistency, each as the prompt of its first
    transcript (its reply dropped)."""
    firsts: dict[str, Any] = {}
    for t in build_consistency():
        firsts.setdefault(t.group, t)
    return [Prompt.from_transcript(t) for t in list(firsts.values())[:count]]


@dataclass
class Reply:
    """What the three paths must agree on, per prompt."""

    text: str
    n_new_tokens: int
    stopped: str


@dataclass
class Setup:
    config: GenerationBenchConfig
    model: LoadedModel
    hf_model: Any
    prompts: list[Prompt]
    batches: list[tuple[list[int], torch.Tensor, torch.Tensor]]  # prompt indices, ids, mask
    kwargs: dict[str, Any]
    stops: set[int]

    def run_hf(self, batches: Sequence[tuple[list[int], torch.Tensor, torch.Tensor]]) -> dict:
        """Bare ``generate`` of the separate copy; replies decoded as ``generate`` does."""
        replies: dict[str, Reply] = {}
        for indices, ids, mask in batches:
            with torch.inference_mode():
                out = self.hf_model.generate(ids, attention_mask=mask, **self.kwargs)
            for i, row in zip(indices, out[:, ids.shape[1] :].tolist(), strict=True):
                replies[self.prompts[i].id] = self.decode(row)
        return replies

    def decode(self, tokens: list[int]) -> Reply:
        end = next((j for j, t in enumerate(tokens) if t in self.stops), None)
        kept = tokens if end is None else tokens[:end]
        text = self.model.tokenizer.decode(kept, skip_special_tokens=True).strip()
        n = len(tokens) if end is None else end + 1
        return Reply(text, n, "length" if end is None else "eos")

    def run_interp(self, prompts: Sequence[Prompt], through_bridge: bool = False) -> dict:
        """``generate`` end to end into a fresh file; with ``through_bridge``, inside a no-op
        hook on the bridge."""
        noop = [(hook_name(0, "resid_pre"), lambda act, hook: None)]
        with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
            out = Path(tmp) / "samples.jsonl"
            if through_bridge:
                with self.model.bridge.hooks(fwd_hooks=noop):
                    found = generate(
                        self.model, prompts, self.config.generation(), out, progress=False
                    )
            else:
                found = generate(self.model, prompts, self.config.generation(), out, progress=False)
        return {
            t.id.removesuffix("-s0"): Reply(t.reply, t.meta["n_new_tokens"], t.meta["stopped"])
            for t in found
        }


def setup(config: GenerationBenchConfig) -> Setup:
    if config.threads:
        torch.set_num_threads(config.threads)
    print(f"Loading {config.model} (bridge) and a separate Hugging Face copy...", flush=True)
    model = load_model(config.model, device=config.device)
    _, hf_model, _ = load_hf_model(config.model, model.dtype)
    hf_model.eval().to(model.device)
    prompts = scenario_prompts(config.prompts)
    tokenizer = model.tokenizer
    stops = stop_token_ids(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    encoded = encode_prompts(tokenizer, prompts)
    batches = []
    for indices in length_batches(encoded, config.batch_size):
        ids, mask = pad_left([encoded[i] for i in indices], pad_id)
        batches.append((indices, ids.to(model.device), mask.to(model.device)))
    kwargs = hf_generate_kwargs(config.generation(), pad_id, stops)
    return Setup(config, model, hf_model, prompts, batches, kwargs, set(stops))


def time_paths(
    s: Setup,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, Reply]]]:
    """A warm-up batch through each path, then each path ``repeats`` times in rotating order:
    seconds per run (``wall`` clock and this process's ``cpu`` time) and the replies of the
    last run."""
    first = [s.prompts[i] for i in s.batches[0][0]]
    s.run_hf(s.batches[:1])
    s.run_interp(first)
    s.run_interp(first, through_bridge=True)
    paths: dict[str, Callable[[], dict[str, Reply]]] = {
        "hf": lambda: s.run_hf(s.batches),
        "interp": lambda: s.run_interp(s.prompts),
        "bridge": lambda: s.run_interp(s.prompts, through_bridge=True),
    }
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    cpu: dict[str, list[float]] = {name: [] for name in PATHS}
    replies: dict[str, dict[str, Reply]] = {}
    for r in range(s.config.repeats):
        shift = r % len(PATHS)
        for name in PATHS[shift:] + PATHS[:shift]:

            def call(name: str = name) -> None:
                replies[name] = paths[name]()

            started = time.process_time()
            times[name].append(timed(call, s.model.device))
            cpu[name].append(time.process_time() - started)
        print(
            f"  repeat {r + 1}/{s.config.repeats}: "
            + ", ".join(f"{k} {v[-1]:.2f}s (cpu {cpu[k][-1]:.2f}s)" for k, v in times.items()),
            flush=True,
        )
    return {"wall": times, "cpu": cpu}, replies


def summarise(
    times: dict[str, dict[str, list[float]]], replies: dict[str, dict[str, Reply]]
) -> dict:
    """Medians, tokens per second, ratios (by wall clock and by CPU time) and whether the
    paths' replies agree."""
    reference = replies["hf"]
    n_tokens = sum(r.n_new_tokens for r in reference.values())
    median = {name: statistics.median(v) for name, v in times["wall"].items()}
    median_cpu = {name: statistics.median(v) for name, v in times["cpu"].items()}
    rate = {name: n_tokens / m for name, m in median.items()}
    differ = {
        name: sorted(pid for pid in reference if replies[name].get(pid) != reference[pid])
        for name in PATHS
        if name != "hf"
    }
    return {
        "new_tokens": n_tokens,
        "median_s": median,
        "median_cpu_s": median_cpu,
        "tokens_per_s": rate,
        "ratio_interp_over_hf": rate["interp"] / rate["hf"],
        "ratio_interp_over_bridge": rate["interp"] / rate["bridge"],
        "cpu_ratio_interp_over_hf": median_cpu["hf"] / median_cpu["interp"],
        "cpu_ratio_interp_over_bridge": median_cpu["bridge"] / median_cpu["interp"],
        "target_ratio_min": 0.95,
        "replies_identical": not any(differ.values()),
        "differing_prompts": differ,
    }


def report(s: Setup, times: dict[str, dict[str, list[float]]], summary: dict) -> str:
    config = s.config
    labels = {
        "hf": "bare hf_model.generate (separate copy)",
        "interp": "interp generate (plain model)",
        "bridge": "interp generate through the bridge",
    }
    lines = [
        "",
        f"model {s.model.name} on {s.model.device} ({torch.get_num_threads()} threads), "
        f"{len(s.prompts)} prompts in {len(s.batches)} batches of <= {config.batch_size}, "
        f"greedy, {config.max_new_tokens} new tokens at most, "
        f"{summary['new_tokens']} generated, median of {config.repeats}",
    ]
    width = max(len(v) for v in labels.values())
    for name in PATHS:
        wall = times["wall"][name]
        lines.append(
            f"{labels[name]:<{width}} {summary['median_s'][name]:8.2f} s "
            f"({min(wall):.2f}-{max(wall):.2f} s) {summary['tokens_per_s'][name]:8.1f} tokens/s"
            f"  cpu {summary['median_cpu_s'][name]:.2f} s"
        )
    same = "identical" if summary["replies_identical"] else "DIFFERENT"
    lines += [
        f"replies of the three paths: {same} {summary['differing_prompts']}",
        f"RATIO interp/hf = {summary['ratio_interp_over_hf']:.3f}  (tokens/s; target >= 0.95)",
        f"RATIO interp/bridge = {summary['ratio_interp_over_bridge']:.3f}",
        f"by CPU time (less sensitive to other processes): interp/hf = "
        f"{summary['cpu_ratio_interp_over_hf']:.3f}, interp/bridge = "
        f"{summary['cpu_ratio_interp_over_bridge']:.3f}",
    ]
    return "\n".join(lines)


def run(config: GenerationBenchConfig) -> Path:
    s = setup(config)
    times, replies = time_paths(s)
    summary = summarise(times, replies)
    print(report(s, times, summary))
    result = {
        "model": {"name": s.model.name, "fingerprint": s.model.fingerprint},
        "device": str(s.model.device),
        "hf_attn_implementation": getattr(s.hf_model.config, "_attn_implementation", None),
        "generation": asdict(config.generation()),
        "n_prompts": len(s.prompts),
        "n_batches": len(s.batches),
        "times_s": times["wall"],
        "cpu_times_s": times["cpu"],
        **summary,
    }
    out = write_result("generation", config, result, config.out)
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(GenerationBenchConfig, run, argv, prog="python experiments/bench_generation.py")


if __name__ == "__main__":
    raise SystemExit(main())
