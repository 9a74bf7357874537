"""Models: which ones there are, how one is loaded behind a TransformerLens
``TransformerBridge``, and where its weights go.

>>> from interp.models import load_model, list_models
>>> model = load_model("tiny-random", device="cpu")

One module per concern:

- :mod:`interp.models.registry`: model names and builders (:data:`MODEL_BUILDERS`,
  :func:`register_model`, :func:`list_models`), the embedded default model
  (:data:`DEFAULT_MODEL`, SmolLM2-135M-Instruct), the tiny test models, and how a spec
  (name, folder, saved fine-tune, cached Hugging Face id) is located;
- :mod:`interp.models.load`: :func:`load_model` and :class:`LoadedModel` (read, place, boot
  the bridge);
- :mod:`interp.models.placement`: devices, dtypes and device maps, checked before loading;
- :mod:`interp.models.checkpoints`: fingerprints, and loading only the blocks a run needs;
- :mod:`interp.models.tiny`: the transformers configs of the tiny random architectures;
- :mod:`interp.models.plain`: the plain Hugging Face model behind a bridge, for generation.

This package gathers the names users reach for; the rest live in their module.
"""

from __future__ import annotations

from interp.models.checkpoints import weights_fingerprint
from interp.models.load import (
    LoadedModel,
    check_architecture,
    load_dispatched_on_cpu,
    load_hf_model,
    load_model,
    model_fingerprint,
    wrap_model,
)
from interp.models.registry import (
    DEFAULT_MODEL,
    MODEL_BUILDERS,
    ModelBuilder,
    ModelError,
    build_tiny,
    build_tiny_random,
    embedded_model_dir,
    list_models,
    register_model,
    smollm2_gguf_path,
    smollm2_tokenizer,
    tiny_builder,
)

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_BUILDERS",
    "LoadedModel",
    "ModelBuilder",
    "ModelError",
    "build_tiny",
    "build_tiny_random",
    "check_architecture",
    "embedded_model_dir",
    "list_models",
    "load_dispatched_on_cpu",
    "load_hf_model",
    "load_model",
    "model_fingerprint",
    "register_model",
    "smollm2_gguf_path",
    "smollm2_tokenizer",
    "tiny_builder",
    "weights_fingerprint",
    "wrap_model",
]
