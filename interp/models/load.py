"""Loading a model behind a TransformerLens ``TransformerBridge``: :func:`load_model` takes
any spec :func:`interp.models.registry.locate` resolves, checks the options against this
machine (:mod:`interp.models.placement`), reads only the blocks a run needs
(:mod:`interp.models.checkpoints`), places the weights and boots the bridge
(:func:`wrap_model`); :class:`LoadedModel` is what every command gets.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.hooks import check_layer
from interp.models.checkpoints import (
    checkpoint_fingerprint,
    cut_config,
    drop_unembedding,
    dropped_block_key,
    kept_blocks,
    n_blocks,
    truncate_blocks,
    weights_fingerprint,
)
from interp.models.placement import (
    Placement,
    dispatch_on_cpu,
    dtype_name,
    plan_device_map,
    resolve_placement,
)
from interp.models.registry import (
    DEFAULT_MODEL,
    ModelError,
    Source,
    from_pretrained,
    locate,
    refuse_pickled_weights,
)


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


def _build(spec: str, dtype: torch.dtype) -> tuple[str, Any, Any]:
    source = locate(spec)
    if source.builder is not None:
        model, tokenizer = source.builder(dtype)
    else:
        model, tokenizer = from_pretrained(source.folder, dtype)  # type: ignore[arg-type]
    return source.name, model, tokenizer


def load_hf_model(
    spec: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32
) -> tuple[str, Any, Any]:
    """``(name, hf_model, tokenizer)`` for any spec :func:`load_model` accepts, without the
    bridge (for training the plain Hugging Face model)."""
    return _build(spec, dtype)


def model_fingerprint(spec: str) -> str:
    """The fingerprint :func:`load_model` gives the model of ``spec``: of the checkpoint
    folder (:func:`interp.models.checkpoints.checkpoint_fingerprint`), or of the weights a builder
    makes in float32 (:func:`weights_fingerprint`)."""
    source = locate(spec)
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

    refuse_pickled_weights(folder)
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
    source: Source, placement: Placement, max_layer: int | None, dispatch_cpu: bool
) -> tuple[Any, Any, str, int]:
    """``(hf_model, tokenizer, fingerprint, checkpoint blocks)`` of ``source``, placed: in
    ``placement``'s dtype, with blocks up to ``max_layer`` only, on its device or device map
    (or, with ``dispatch_cpu``, split over the CPU by
    :func:`~interp.models.placement.dispatch_on_cpu`)."""
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
    source = locate(spec)
    model, tokenizer, fingerprint, total = _make(source, placement, max_layer, False)
    loaded = wrap_model(source.name, model, tokenizer, fingerprint, total)
    return _activations_only(loaded) if max_layer is not None else loaded


def _activations_only(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` without logits: its output head emptied (see
    :func:`interp.models.checkpoints.drop_unembedding`)."""
    drop_unembedding(loaded.bridge.original_model)
    loaded.has_logits = False
    return loaded


def load_dispatched_on_cpu(spec: str = "tiny-random", max_layer: int | None = None) -> LoadedModel:
    """``spec`` in float32, split module by module over the CPU with accelerate's hooks
    forced on (:func:`interp.models.placement.dispatch_on_cpu`): the code path of a model split over
    several GPUs, for tests on machines without one."""
    placement = resolve_placement("cpu", torch.float32)
    source = locate(spec)
    model, tokenizer, fingerprint, total = _make(source, placement, max_layer, True)
    loaded = wrap_model(source.name, model, tokenizer, fingerprint, total)
    return _activations_only(loaded) if max_layer is not None else loaded
