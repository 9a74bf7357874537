"""Shared fixtures: a tiny random Llama with SmolLM2's tokenizer, seeded everything."""

from __future__ import annotations

import random

import pytest
import torch

from interp.data.datasets import build_consistency
from interp.models import LoadedModel, load_model


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def small_dataset():
    """Transcripts of three scenarios (48), enough for splits and both labels."""
    data = build_consistency()
    groups = sorted({t.group for t in data})[:3]
    return [t for t in data if t.group in groups]
