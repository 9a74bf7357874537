"""Activation patching between two prompts or two models, many patches per forward pass.

>>> from interp.patching import chat_input, LogProbDiff, patch_sweep
>>> result = patch_sweep(model, target_input, LogProbDiff.from_text(tok, "Sure", "I can't"),
...                      source_input=source_input, sites=("resid_pre", "attn_out"),
...                      segments=["user_2"])
>>> result.normalised  # [site, layer, column]; 0 = target unchanged, 1 = source behaviour
"""

from interp.patching.aggregate import PatchAverage, average_patches
from interp.patching.metrics import LogProbDiff, Metric, NextTokenKL, ProbeScore, RunOutput
from interp.patching.parallel import merge_parts, split_sweep, sweep_key
from interp.patching.result import PatchResult
from interp.patching.runner import Patch
from interp.patching.segments import (
    GENERATION_PROMPT,
    Column,
    PatchError,
    PatchInput,
    align,
    chat_input,
)
from interp.patching.sweep import Sweep, check_patchable, patch_sweep, source_activations

__all__ = [
    "GENERATION_PROMPT",
    "Column",
    "LogProbDiff",
    "Metric",
    "NextTokenKL",
    "Patch",
    "PatchAverage",
    "PatchError",
    "PatchInput",
    "PatchResult",
    "ProbeScore",
    "RunOutput",
    "Sweep",
    "align",
    "average_patches",
    "chat_input",
    "check_patchable",
    "merge_parts",
    "patch_sweep",
    "source_activations",
    "split_sweep",
    "sweep_key",
]
