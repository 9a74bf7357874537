"""Interpretability toolkit for reason-based deception in chat models.

>>> from interp import load_model, load_dataset, cache_activations, train_probe, ProbeConfig

Importing this package defines things and does nothing else (no model is loaded, no file
is read or written).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and editors; at run time names load on first use
    from interp.cache import (
        ActivationSet,
        CacheMismatchError,
        cache_activations,
        load_activation_set,
    )
    from interp.config import ConfigError, ProbeConfig
    from interp.datasets import build_benign, build_consistency, load_dataset
    from interp.finetune import FinetuneConfig, FinetuneError
    from interp.generate import GenerationConfig, Prompt, generate
    from interp.hooks import HookError, hook_name
    from interp.models import DEFAULT_MODEL, LoadedModel, ModelError, load_model
    from interp.train import ProbeRun, train_probe
    from interp.transcripts import Transcript, TranscriptError, load_transcripts, write_transcripts
    from interp.weight_diff import WeightDiff, WeightDiffError, weight_diff

#: Where each exported name lives. Importing ``interp`` loads none of these modules (torch and
#: the model stack load only when a name is first used), and ``python -m interp.<module>``
#: runs that module without importing it twice.
_EXPORTS: dict[str, str] = {
    "ActivationSet": "interp.cache",
    "CacheMismatchError": "interp.cache",
    "ConfigError": "interp.config",
    "DEFAULT_MODEL": "interp.models",
    "FinetuneConfig": "interp.finetune",
    "FinetuneError": "interp.finetune",
    "GenerationConfig": "interp.generate",
    "HookError": "interp.hooks",
    "LoadedModel": "interp.models",
    "ModelError": "interp.models",
    "ProbeConfig": "interp.config",
    "ProbeRun": "interp.train",
    "Prompt": "interp.generate",
    "Transcript": "interp.transcripts",
    "TranscriptError": "interp.transcripts",
    "WeightDiff": "interp.weight_diff",
    "WeightDiffError": "interp.weight_diff",
    "build_benign": "interp.datasets",
    "build_consistency": "interp.datasets",
    "cache_activations": "interp.cache",
    "generate": "interp.generate",
    "hook_name": "interp.hooks",
    "load_activation_set": "interp.cache",
    "load_dataset": "interp.datasets",
    "load_model": "interp.models",
    "load_transcripts": "interp.transcripts",
    "train_probe": "interp.train",
    "weight_diff": "interp.weight_diff",
    "write_transcripts": "interp.transcripts",
}


__all__ = [
    "DEFAULT_MODEL",
    "ActivationSet",
    "CacheMismatchError",
    "ConfigError",
    "FinetuneConfig",
    "FinetuneError",
    "GenerationConfig",
    "HookError",
    "LoadedModel",
    "ModelError",
    "ProbeConfig",
    "ProbeRun",
    "Prompt",
    "Transcript",
    "TranscriptError",
    "WeightDiff",
    "WeightDiffError",
    "build_benign",
    "build_consistency",
    "cache_activations",
    "generate",
    "hook_name",
    "load_activation_set",
    "load_dataset",
    "load_model",
    "load_transcripts",
    "train_probe",
    "weight_diff",
    "write_transcripts",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
