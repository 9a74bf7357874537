"""Interpretability toolkit for reason-based deception in chat models.

>>> from interp import load_model, load_dataset, cache_activations, train_probe, ProbeConfig

Importing this package defines things and does nothing else (no model is loaded, no file
is read or written).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers and editors; at run time names load on first use
    from interp.cache import (
        ActivationSet,
        CacheMismatchError,
        cache_activations,
        load_activation_set,
    )
    from interp.config import ConfigError
    from interp.data.datasets import (
        build_benign,
        build_consistency,
        dataset_sources,
        list_datasets,
        load_dataset,
    )
    from interp.data.transcripts import (
        Transcript,
        TranscriptError,
        load_transcripts,
        write_transcripts,
    )
    from interp.finetune import FinetuneConfig, FinetuneError
    from interp.finetune.weight_diff import WeightDiff, WeightDiffError, weight_diff
    from interp.hooks import HookError, hook_name
    from interp.models import DEFAULT_MODEL, LoadedModel, ModelError, list_models, load_model
    from interp.probe import (
        ProbeConfig,
        ProbeRun,
        load_probe,
        load_run,
        score_transcripts,
        train_probe,
    )
    from interp.text.generation import GenerationConfig, Prompt, generate

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
    "GenerationConfig": "interp.text.generation",
    "HookError": "interp.hooks",
    "LoadedModel": "interp.models",
    "ModelError": "interp.models",
    "ProbeConfig": "interp.probe.config",
    "ProbeRun": "interp.probe.results",
    "Prompt": "interp.text.generation",
    "Transcript": "interp.data.transcripts",
    "TranscriptError": "interp.data.transcripts",
    "WeightDiff": "interp.finetune.weight_diff",
    "WeightDiffError": "interp.finetune.weight_diff",
    "build_benign": "interp.data.datasets",
    "build_consistency": "interp.data.datasets",
    "cache_activations": "interp.cache",
    "generate": "interp.text.generation",
    "hook_name": "interp.hooks",
    "dataset_sources": "interp.data.datasets",
    "list_datasets": "interp.data.datasets",
    "list_models": "interp.models",
    "load_activation_set": "interp.cache",
    "load_dataset": "interp.data.datasets",
    "load_model": "interp.models",
    "load_transcripts": "interp.data.transcripts",
    "train_probe": "interp.probe.pipeline",
    "load_probe": "interp.probe.results",
    "load_run": "interp.probe.results",
    "score_transcripts": "interp.probe.score",
    "weight_diff": "interp.finetune.weight_diff",
    "write_transcripts": "interp.data.transcripts",
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
    "dataset_sources",
    "generate",
    "hook_name",
    "list_datasets",
    "list_models",
    "load_activation_set",
    "load_dataset",
    "load_model",
    "load_probe",
    "load_run",
    "load_transcripts",
    "score_transcripts",
    "train_probe",
    "weight_diff",
    "write_transcripts",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
