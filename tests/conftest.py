"""Shared fixtures: a tiny random Llama with SmolLM2's tokenizer, seeded everything.

Every function and dataclass of ``interp`` and ``probes`` is checked at run time during the
tests: jaxtyping's import hook wraps them in ``@jaxtyped(typechecker=beartype)``, so a tensor
whose shape or dtype breaks its annotation (``Float[Tensor, "n d"]``), or a value of the wrong
type, raises. The hook is installed here rather than with ``--jaxtyping-packages`` because
beartype needs a setting: it rejects ``-> Self`` on a method unless it decorates the whole
class, so ``Self`` is checked as ``Any``. (jaxtyping 0.3's pytest option cannot pass a
typechecker with arguments together with more than one package.) ``JAXTYPING_DISABLE=1``
turns the checks off, e.g. to time the code alone.
"""

from __future__ import annotations

import random
import sys

import pytest
import torch
from jaxtyping import install_import_hook

if {"interp", "probes"} & set(sys.modules):
    raise RuntimeError("interp or probes was imported before tests/conftest.py could check it")
install_import_hook(
    ["interp", "probes"],
    "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True, "
    "hint_overrides=beartype.FrozenDict({beartype.typing.Self: beartype.typing.Any})))",
)

import jaxtyping  # noqa: E402

from interp.cache.config import CacheConfig  # noqa: E402 (after the hook)
from interp.data.datasets import build_consistency  # noqa: E402
from interp.models import LoadedModel, load_dispatched_on_cpu, load_model  # noqa: E402
from interp.probe.config import ProbeConfig  # noqa: E402
from interp.sae.config import SAEConfig  # noqa: E402
from interp.text.generation import GenerationConfig, Prompt  # noqa: E402

# These dataclasses take more than their fields' annotations say, on purpose, and their
# ``__post_init__`` turns it into the annotated type or refuses it with its own message:
# ``ProbeConfig(layers=14 | "0-3" | [0, 7])`` (``CacheConfig`` likewise),
# ``SAEConfig(datasets="a,b" | [...])``, ``Prompt(messages=[...])``; ``GenerationConfig``
# checks its numbers' types itself. The annotations describe the fields after
# ``__post_init__`` (the CLI reads them), so the generated ``__init__`` stays unchecked; the
# fields are checked where they are used.
for _config in (ProbeConfig, CacheConfig, SAEConfig, Prompt, GenerationConfig):
    _config.__init__ = getattr(_config.__init__, "__wrapped__", _config.__init__)  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _typecheck(request: pytest.FixtureRequest):
    """Run-time annotation checks, off for tests marked ``no_typecheck`` (those assert a
    function's own message for input that breaks its annotation)."""
    if request.node.get_closest_marker("no_typecheck") is None:
        yield
        return
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def dispatched_tiny() -> LoadedModel:
    """The tiny model split module by module over the CPU by accelerate, its hooks forced on
    (:func:`interp.models.load_dispatched_on_cpu`): the code path of a model split over GPUs
    with ``--device-map``. Its weights and fingerprint are ``tiny_model``'s."""
    return load_dispatched_on_cpu("tiny-random")


@pytest.fixture(scope="session")
def small_dataset():
    """Transcripts of three scenarios (48), enough for splits and both labels."""
    data = build_consistency()
    groups = sorted({t.group for t in data})[:3]
    return [t for t in data if t.group in groups]


@pytest.fixture
def count_passes(monkeypatch):
    """``count_passes(model, fail_after=None)`` counts forward passes through the bridge's
    ``run_with_cache`` (returns ``{"n": ...}``); with ``fail_after`` the next pass raises
    ``KeyboardInterrupt``, as a user's Ctrl-C would."""

    def counting(model, fail_after: int | None = None) -> dict[str, int]:
        calls = {"n": 0}
        original = model.bridge.run_with_cache

        def wrapped(*args, **kwargs):
            if fail_after is not None and calls["n"] >= fail_after:
                raise KeyboardInterrupt("simulated interruption")
            calls["n"] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(model.bridge, "run_with_cache", wrapped)
        return calls

    return counting


@pytest.fixture
def tl_metric_of():
    """``tl_metric_of(metric)``: ``transformer_lens.patching``'s metric for a one-token
    ``LogProbDiff``: log p of the complying minus the refusing first token at the last
    position."""

    def tl_metric_of(metric):
        comply, refuse = int(metric.comply[0]), int(metric.refuse[0])

        def tl_metric(logits):
            logp = logits[0, -1].log_softmax(-1)
            return logp[comply] - logp[refuse]

        return tl_metric

    return tl_metric_of
