"""Interpretability toolkit for reason-based deception in chat models.

>>> from interp import load_model, load_dataset, cache_activations, train_probe, ProbeConfig

Importing this package defines things and does nothing else (no model is loaded, no file
is read or written).
"""

from interp.cache import ActivationSet, CacheMismatchError, cache_activations, load_activation_set
from interp.config import ConfigError, ProbeConfig
from interp.datasets import build_benign, build_consistency, load_dataset
from interp.finetune import FinetuneConfig, FinetuneError
from interp.generate import GenerationConfig, Prompt, generate
from interp.hooks import HookError, hook_name
from interp.models import DEFAULT_MODEL, LoadedModel, ModelError, load_model
from interp.train import ProbeRun, train_probe
from interp.transcripts import Transcript, TranscriptError, load_transcripts, write_transcripts
from interp.weight_diff import WeightDiff, WeightDiffError, weight_diff

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
