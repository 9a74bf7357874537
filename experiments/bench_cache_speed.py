"""Benchmark: how fast is caching one residual hook compared with a plain forward pass?

What is measured (all on the same left-padded batches, in the same run):

- ``hf_forward``: a plain Hugging Face forward pass (logits included) of a *separate* copy of
  the model (booting the TransformerBridge rewires the HF model in place, so the bridge's own
  copy cannot serve as the baseline), under ``torch.inference_mode``;
- ``bridge_cache``: our caching path, ``model.bridge.run_with_cache(ids, attention_mask=...,
  names_filter=[hook], stop_at_layer=layer + 1)`` under ``torch.inference_mode``, which
  stops after the hooked block;
- ``cache_activations``: :func:`interp.cache.cache_activations` end to end into a fresh
  temporary cache folder (tokenising, batching, the same forward pass, mean pooling, writing
  safetensors shards and reading them back), to show the overhead around the forward pass;
- ``hf_trunk`` (only with ``--hf-trunk``): the HF decoder without the LM head
  (``hf_model.model``), which tells how much of the baseline is the 49k-wide unembedding.

Batches are built like ``cache_activations`` builds them: transcripts encoded with
``encode_transcript``, sorted by length, cut into ``--batch-size`` chunks and left-padded with
``pad_batch``. A warm-up batch runs through each path first; then the paths run in turn
(rotating their order) ``--repeats`` times and the median time of each is reported. Before
timing, the hooked activations are checked against the HF copy's ``hidden_states[layer + 1]``
on non-padding positions, so both paths compute the same thing.

Target: ``bridge_cache / hf_forward <= ~0.6`` at the default layer 14 of the 30-block
default model (the pass stops after block 15 of 30 and skips the LM head), and ``<= 0.55``
with ``--dtype bfloat16 --max-layer 14`` (the bridge holds blocks 0-14 only; the baseline
is still the whole model's forward pass in the same dtype).

Reading the output: one row per path with the median seconds over the whole set, the
spread (min-max), milliseconds per transcript and tokens per second (padding included); then
``RATIO cache/HF``, the one number to compare with the target (below 1 = caching is cheaper),
and the end-to-end overhead of ``cache_activations`` over the bare ``run_with_cache`` loop.
Timings are wall-clock (``time.perf_counter``) and noisy on a shared CPU; compare ratios
from one run, never against numbers stored from another machine or run.

Defaults: the first 32 transcripts of builtin:consistency (~220 tokens each) in batches of
16, 3 repeats: about 3 minutes on an otherwise idle 2-core CPU with the default model, several
times that on a busy one (use ``--n 16`` there). On a GPU use ``--n 256`` or more.

``--dtype`` (``auto``: bfloat16 on CUDA, float32 on the CPU) sets the dtype of both copies;
``--max-layer`` loads the bridge's copy only up to that block (:func:`interp.models.load_model`'s
``max_layer``), as a user caching one layer of a large model would.

Run: ``python experiments/bench_cache_speed.py``; quick check:
``python experiments/bench_cache_speed.py --n 8 --batch-size 4 --repeats 1``.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.benchmarks import sync, timed, write_result
from interp.cache import cache_activations, mean_pool, pad_batch
from interp.cli import run_cli
from interp.config import (
    ConfigError,
    ModelOptions,
    model_options,
)
from interp.data.datasets import build_consistency
from interp.data.tokens import TOKEN_SELECTIONS, encode_transcript
from interp.data.transcripts import Transcript
from interp.hooks import check_layer, hook_name, stop_layer
from interp.models import DEFAULT_MODEL, LoadedModel, load_hf_model, load_model


@dataclass
class CacheSpeedConfig(ModelOptions):
    """Time caching one hook vs a plain HF forward pass on the same batches."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec, as for load_model"})
    layer: int = field(default=14, metadata={"help": "block whose resid_post is cached"})
    n: int = field(default=32, metadata={"help": "transcripts of builtin:consistency"})
    batch_size: int = field(default=16, metadata={"help": "transcripts per forward pass"})
    repeats: int = field(default=3, metadata={"help": "timed repeats (median reported)"})
    max_layer: int | None = field(
        default=None,
        metadata={
            "help": "load only blocks 0..MAX_LAYER for the cached path (>= --layer); the HF "
            "baseline stays the whole model",
            "default_text": "every block",
        },
    )
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads; 1 can be faster on a busy machine",
            "default_text": "torch's choice",
        },
    )
    tokens: str = field(
        default="answer", metadata={"help": "token selection", "choices": TOKEN_SELECTIONS}
    )
    max_tokens: int = field(default=1024, metadata={"help": "longer transcripts cut from left"})
    hf_trunk: bool = field(
        default=False,
        metadata={
            "help": "also time the HF decoder without its LM head (one more pass per repeat)"
        },
    )
    out: str | None = field(
        default=None,
        metadata={
            "help": "JSON results",
            "default_text": "<cache>/benchmarks/cache_speed.json",
        },
    )

    def __post_init__(self) -> None:
        for name in ("n", "batch_size", "repeats", "max_tokens", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        super().__post_init__()
        if self.max_layer is not None and self.max_layer < self.layer:
            raise ConfigError(
                f"--max-layer {self.max_layer} leaves out block {self.layer}, the one cached; "
                f"give --max-layer >= --layer"
            )


def transcripts_for(n: int) -> list[Transcript]:
    pool = build_consistency()
    if n > len(pool):
        pool = build_consistency(per_cell=None)
    if n > len(pool):
        raise ConfigError(f"--n {n} is more than the {len(pool)} transcripts available")
    return pool[:n]


@dataclass
class Setup:
    """The bridge, a separate HF copy and the padded batches every path runs on."""

    config: CacheSpeedConfig
    model: LoadedModel
    hf_model: Any
    hook: str
    stop: int
    transcripts: list[Transcript]
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    n_real: int

    @property
    def n_padded(self) -> int:
        return sum(ids.numel() for ids, _, _ in self.batches)

    def hf_pass(self, ids: torch.Tensor, att: torch.Tensor, **kw: Any) -> Any:
        with torch.inference_mode():
            return self.hf_model(input_ids=ids, attention_mask=att, **kw)

    def trunk_pass(self, ids: torch.Tensor, att: torch.Tensor) -> Any:
        with torch.inference_mode():
            return self.hf_model.model(input_ids=ids, attention_mask=att)

    def bridge_pass(self, ids: torch.Tensor, att: torch.Tensor) -> Any:
        with torch.inference_mode():
            _, acts = self.model.bridge.run_with_cache(
                ids, attention_mask=att, names_filter=[self.hook], stop_at_layer=self.stop
            )
        return acts

    def cache_all(self, transcripts: Sequence[Transcript], prefix: str) -> None:
        """``cache_activations`` end to end into a fresh temporary folder."""
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            cache_activations(
                self.model,
                transcripts,
                [self.hook],
                self.config.tokens,
                batch_size=self.config.batch_size,
                max_tokens=self.config.max_tokens,
                cache_dir=Path(tmp),
                progress=False,
            )
            sync(self.model.device)


def setup(config: CacheSpeedConfig) -> Setup:
    if config.threads:
        torch.set_num_threads(config.threads)
    print(f"Loading {config.model} (bridge) and a separate Hugging Face copy...", flush=True)
    model = load_model(config.model, **model_options(config), max_layer=config.max_layer)
    device = model.device
    check_layer(config.layer, model.n_layers)
    hook = hook_name(config.layer)
    stop = stop_layer([hook], model.n_layers)
    # a fresh, whole copy in the same dtype; the bridge rewired its own
    _, hf_model, _ = load_hf_model(config.model, model.dtype)
    hf_model.eval().to(device)

    transcripts = transcripts_for(config.n)
    encoded = [
        encode_transcript(model.tokenizer, t, config.tokens, config.max_tokens) for t in transcripts
    ]
    lengths = [len(e.input_ids) for e in encoded]
    order = sorted(range(len(encoded)), key=lambda i: (lengths[i], i))  # as cache_activations
    pad_id = model.tokenizer.pad_token_id
    batches = [
        pad_batch([encoded[i] for i in order[k : k + config.batch_size]], pad_id, device)
        for k in range(0, len(order), config.batch_size)
    ]
    return Setup(config, model, hf_model, hook, stop, transcripts, batches, sum(lengths))


def warm_up_and_check(s: Setup) -> dict[str, Any]:
    """One batch through each path (warm-up), comparing the hooked activations with the HF
    copy's ``hidden_states[layer + 1]`` on real tokens."""
    print("Warm-up and agreement check on one batch...", flush=True)
    layer = s.config.layer
    ids, att, sel = s.batches[0]
    acts = s.bridge_pass(ids, att)[s.hook]
    check: dict[str, Any] = {"checked": False}
    if layer + 1 < (s.model.checkpoint_layers or s.model.n_layers):  # HF's last is normed
        ref = s.hf_pass(ids, att, output_hidden_states=True).hidden_states[layer + 1]
        real = att.bool()
        diff = (acts - ref)[real].abs().max().item()
        pooled_a, pooled_r = mean_pool(acts, sel), mean_pool(ref, sel)
        pooled_rel = ((pooled_a - pooled_r).norm(dim=1) / pooled_r.norm(dim=1)).max().item()
        check = {
            "checked": True,
            "max_abs_diff_real_tokens": diff,
            "max_abs_activation": ref[real].abs().max().item(),
            "max_rel_diff_pooled": pooled_rel,
        }
    else:
        s.hf_pass(ids, att)
    if s.config.hf_trunk:
        s.trunk_pass(ids, att)
    s.cache_all(s.transcripts[: s.config.batch_size], "bench-cache-warm-")
    return check


def time_paths(s: Setup) -> dict[str, list[float]]:
    """Each path over every batch, ``repeats`` times in rotating order: seconds per run."""

    def over_batches(one_pass: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            for ids, att, _ in s.batches:
                one_pass(ids, att)

        return run

    paths: dict[str, Callable[[], None]] = {
        "hf_forward": over_batches(s.hf_pass),
        "bridge_cache": over_batches(s.bridge_pass),
        "cache_activations": lambda: s.cache_all(s.transcripts, "bench-cache-"),
    }
    if s.config.hf_trunk:
        paths["hf_trunk"] = over_batches(s.trunk_pass)
    names = list(paths)
    times: dict[str, list[float]] = {name: [] for name in names}
    repeats = s.config.repeats
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(paths[name], s.model.device))
        print(
            f"  repeat {r + 1}/{repeats}: "
            + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
            flush=True,
        )
    return times


def report(s: Setup, check: dict[str, Any], times: dict[str, list[float]]) -> str:
    """The table of medians per path and the ratio."""
    config = s.config
    median = {name: statistics.median(v) for name, v in times.items()}
    labels = {
        "hf_forward": "HF forward (full, logits)",
        "hf_trunk": "HF trunk (no LM head)",
        "bridge_cache": f"run_with_cache {s.hook} (stop {s.stop})",
        "cache_activations": "cache_activations end to end",
    }
    lines = [
        "",
        f"model {s.model.name} on {s.model.device} ({torch.get_num_threads()} threads), "
        f"{config.n} transcripts in {len(s.batches)} batches of <= {config.batch_size}, "
        f"{s.n_real} tokens ({s.n_padded} with padding), median of {config.repeats}",
    ]
    if check["checked"]:
        lines.append(
            f"agreement: max |bridge - HF hidden_states[{config.layer + 1}]| on real tokens = "
            f"{check['max_abs_diff_real_tokens']:.2e} (activations up to "
            f"{check['max_abs_activation']:.3g}); pooled rel. diff "
            f"{check['max_rel_diff_pooled']:.2e}"
        )
    width = max(len(labels[name]) for name in median)
    header = f"{'path':<{width}} {'median s':>9} {'min-max s':>13} {'ms/transcr':>11} {'tok/s':>8}"
    lines += [header, "-" * len(header)]
    for name in [n for n in labels if n in median]:
        m = median[name]
        spread = f"{min(times[name]):.2f}-{max(times[name]):.2f}"
        lines.append(
            f"{labels[name]:<{width}} {m:>9.2f} {spread:>13} "
            f"{1000 * m / config.n:>11.1f} {s.n_padded / m:>8.0f}"
        )
    overhead = median["cache_activations"] / median["bridge_cache"] - 1.0
    ratio = median["bridge_cache"] / median["hf_forward"]
    lines += [
        "",
        f"end-to-end overhead of cache_activations over run_with_cache: {100 * overhead:+.1f}%",
        f"RATIO cache/HF = {ratio:.3f}  (run_with_cache / full HF forward; "
        f"target <= ~0.6 for layer 14 of 30)",
    ]
    return "\n".join(lines)


def run(config: CacheSpeedConfig) -> Path:
    s = setup(config)
    check = warm_up_and_check(s)
    times = time_paths(s)
    print(report(s, check, times))
    median = {name: statistics.median(v) for name, v in times.items()}
    result = {
        "model": {
            "name": s.model.name,
            "n_layers": s.model.n_layers,
            "checkpoint_layers": s.model.checkpoint_layers,
            "d_model": s.model.d_model,
            "dtype": s.model.dtype_name,
        },
        "hook": s.hook,
        "stop_at_layer": s.stop,
        "hf_attn_implementation": getattr(s.hf_model.config, "_attn_implementation", None),
        "device": str(s.model.device),
        "n_transcripts": config.n,
        "n_batches": len(s.batches),
        "n_tokens": s.n_real,
        "n_tokens_padded": s.n_padded,
        "times_s": times,
        "median_s": median,
        "tokens_per_s": {name: s.n_padded / m for name, m in median.items()},
        "ratio_cache_over_hf": median["bridge_cache"] / median["hf_forward"],
        "target_ratio_max": 0.6,
        "end_to_end_overhead": median["cache_activations"] / median["bridge_cache"] - 1.0,
        "agreement": check,
    }
    out = write_result("cache_speed", config, result, config.out)
    print(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(CacheSpeedConfig, run, argv, prog="python experiments/bench_cache_speed.py")


if __name__ == "__main__":
    raise SystemExit(main())
