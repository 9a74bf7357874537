"""Where a model's weights go and in which dtype: the checks :func:`interp.models.load_model`
makes before anything loads, and the split of a model over several GPUs.

- :func:`available_devices` and :func:`resolve_device`: the devices this machine has, and the
  one a ``device`` option names (``auto``: CUDA, then Apple MPS, then CPU).
- :func:`resolve_dtype`: ``auto`` is bfloat16 on a CUDA GPU that supports it, float32
  elsewhere (CPU, Apple MPS); a dtype the device cannot compute in is refused.
- :func:`resolve_placement`: the device, dtype and device map of a load, checked against
  what this machine has (``device_map`` needs CUDA; on a machine without a GPU it is refused
  with the fix rather than quietly loading everything onto the CPU).
- :func:`plan_device_map`: the per-module map accelerate will use, computed on an empty
  (meta) copy of the model before any weight is read, so a placement the TransformerBridge
  cannot run (weights offloaded to the CPU or disk) is refused in seconds, not after minutes
  of loading. Transformer-lens 3.9 refuses ``device_map``/``max_memory`` together with
  ``hf_model=``, so the map is applied here, in ``from_pretrained``.
- :func:`cpu_device_map` and :func:`dispatch_on_cpu`: a model split module by module over the
  CPU with accelerate's hooks, as a multi-GPU split would be, so tests without a GPU exercise
  the dispatched code path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from interp.config import DEVICE_MAPS, DEVICE_PATTERN, DTYPES, parse_max_memory


class PlacementError(ValueError):
    """A dtype, device or device map this machine or the TransformerBridge cannot use; the
    message says what to change."""


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
    ``cuda:N``, ``mps``) is checked against what this machine has, before anything loads
    (:class:`PlacementError` names the devices there are)."""
    text = str(device)
    here = ", ".join(available_devices())
    if not DEVICE_PATTERN.match(text):
        raise PlacementError(
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
        raise PlacementError(
            f"device {text!r} asked for, but torch sees no CUDA GPU (this machine has: {here}); "
            "use 'cpu' or 'auto', or install a CUDA build of torch"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise PlacementError(f"device {text!r} does not exist; this machine has: {here}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise PlacementError(f"device 'mps' asked for, but torch sees no Apple GPU; use {here}")
    return dev


#: ``--dtype`` names and the torch dtypes they stand for.
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Device-map targets the TransformerBridge cannot run: offloaded weights are materialised
#: by accelerate hooks that the bridge's wrapped components bypass.
OFFLOAD_TARGETS = ("cpu", "disk", "meta")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (as configs, caches and probe metadata spell it)."""
    return str(dtype).removeprefix("torch.")


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "mps":
        try:
            torch.zeros(1, dtype=torch.bfloat16, device=device)
        except (RuntimeError, TypeError):
            return False
    return True


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The torch dtype of ``dtype`` on ``device``: ``auto`` is bfloat16 on a CUDA GPU that
    supports it and float32 elsewhere; bfloat16 on a GPU without it is refused."""
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    elif dtype == "auto":
        cuda_bf16 = device.type == "cuda" and _bf16_supported(device)
        return torch.bfloat16 if cuda_bf16 else torch.float32
    elif dtype in TORCH_DTYPES:
        chosen = TORCH_DTYPES[dtype]
    else:
        raise PlacementError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if chosen not in TORCH_DTYPES.values():
        raise PlacementError(f"dtype {chosen} is not supported; use one of {', '.join(DTYPES)}")
    if chosen == torch.bfloat16 and not _bf16_supported(device):
        where = str(device)
        if device.type == "cuda" and torch.cuda.is_available():
            where = f"{device} ({torch.cuda.get_device_name(device)})"
        raise PlacementError(
            f"dtype bfloat16 asked for, but {where} cannot compute in bfloat16; use --dtype "
            "float16 or float32 (or auto)"
        )
    return chosen


@dataclass(frozen=True)
class Placement:
    """A load's resolved placement: ``device`` (where a whole model goes; with a device map,
    the first GPU until the map is known), ``dtype``, and the device-map strategy with its
    per-GPU budgets (None: load the model whole on ``device``)."""

    device: torch.device
    dtype: torch.dtype
    device_map: str | None = None
    max_memory: dict[int | str, int] | None = None


def _budgets(max_memory: str | dict[int | str, Any] | None) -> dict[int | str, int] | None:
    if max_memory is None or isinstance(max_memory, dict):
        return max_memory  # type: ignore[return-value]
    return parse_max_memory(max_memory)


def resolve_placement(
    device: str | torch.device,
    dtype: str | torch.dtype,
    device_map: str | None = "none",
    max_memory: str | dict[int | str, Any] | None = None,
) -> Placement:
    """Check a load's options against this machine before anything loads.

    ``device_map`` (``auto``, ``balanced``, ``sequential``) needs CUDA: on a machine without
    a GPU it raises with the fix (load whole on the CPU) rather than quietly running a model
    meant for several GPUs on the CPU. ``max_memory`` (``"0=70GiB,1=70GiB"`` or a dict) is
    the per-GPU budget of the map and needs one.
    """
    strategy = None if device_map in (None, "none") else device_map
    if strategy is None:
        if max_memory is not None:
            raise PlacementError(
                "max_memory is a per-GPU budget for device_map; add device_map='auto' "
                "(--device-map auto), or drop max_memory"
            )
        dev = resolve_device(device)
        return Placement(dev, resolve_dtype(dtype, dev))
    if strategy not in DEVICE_MAPS:
        raise PlacementError(
            f"unknown device_map {device_map!r}; choose one of {', '.join(DEVICE_MAPS)}"
        )
    if str(device) not in ("auto", "cuda"):
        raise PlacementError(
            f"device_map {strategy!r} places the model on the CUDA GPUs itself, so device "
            f"{str(device)!r} cannot be honoured: pass --device auto, or drop --device-map"
        )
    if not torch.cuda.is_available():
        raise PlacementError(
            f"device_map {strategy!r} splits the model over CUDA GPUs, but torch sees none; "
            "drop --device-map to load the model whole on this machine's CPU (--device cpu)"
        )
    dev = torch.device("cuda", 0)
    return Placement(dev, resolve_dtype(dtype, dev), strategy, _budgets(max_memory))


def refuse_offload(plan: dict[str, Any], placement: Placement) -> None:
    """Raise :class:`PlacementError` when the device map ``plan`` puts any module on the CPU,
    the disk or the meta device: it would not fit on the GPUs, and the TransformerBridge
    cannot run offloaded weights. The message names the modules and the fixes."""
    offloaded = [
        name or "(the whole model)"
        for name, target in plan.items()
        if str(target).lower() in OFFLOAD_TARGETS
    ]
    if not offloaded:
        return
    budget = placement.max_memory or "what each GPU has free"
    shown = ", ".join(offloaded[:4]) + (
        f" and {len(offloaded) - 4} more" if len(offloaded) > 4 else ""
    )
    raise PlacementError(
        f"the model does not fit on the GPUs in {dtype_name(placement.dtype)} with budget "
        f"{budget}: device_map {placement.device_map!r} would offload {shown} to the CPU or "
        "disk, which the TransformerBridge cannot run. Give the GPUs more room (--max-memory "
        "0=70GiB,1=70GiB), use more GPUs, a smaller --dtype (bfloat16), or probe an earlier "
        "layer (fewer blocks are loaded)"
    )


def plan_device_map(config: Any, placement: Placement) -> dict[str, Any]:
    """The per-module device map ``from_pretrained`` would make for ``config`` with
    ``placement``'s strategy and budgets (transformers' own planner, run on an empty meta
    copy: no weight is read), after :func:`refuse_offload` checked it."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations.accelerate import _get_device_map

    with torch.device("meta"):
        empty = AutoModelForCausalLM.from_config(config, dtype=placement.dtype)
    budgets = dict(placement.max_memory) if placement.max_memory else None
    plan = dict(_get_device_map(empty, placement.device_map, budgets, None))
    refuse_offload(plan, placement)
    return plan


def cpu_device_map(hf_model: Any) -> dict[str, str]:
    """A per-module all-CPU device map of ``hf_model``: every direct child of its base model
    (embedding, each block, final norm) and the rest, each its own entry, as a multi-GPU map
    splits them."""
    base_name = hf_model.base_model_prefix
    base = getattr(hf_model, base_name)
    plan: dict[str, str] = {}
    for name, child in base.named_children():
        if isinstance(child, torch.nn.ModuleList):
            plan.update({f"{base_name}.{name}.{i}": "cpu" for i in range(len(child))})
        else:
            plan[f"{base_name}.{name}"] = "cpu"
    plan.update({name: "cpu" for name, _ in hf_model.named_children() if name != base_name})
    return plan


def dispatch_on_cpu(hf_model: Any) -> Any:
    """``hf_model`` dispatched by accelerate over an all-CPU per-module map with its hooks
    forced on (``force_hooks=True``), so it runs through the same hooks as a model split over
    GPUs; ``hf_device_map`` is set, as ``from_pretrained(device_map=...)`` sets it."""
    from accelerate import dispatch_model

    # accelerate reports any "cpu" entry as offloading to meta; nothing is offloaded here
    logger = logging.getLogger("accelerate.big_modeling")
    quiet = _DropOffloadNotice()
    logger.addFilter(quiet)
    try:
        return dispatch_model(hf_model, device_map=cpu_device_map(hf_model), force_hooks=True)
    finally:
        logger.removeFilter(quiet)


class _DropOffloadNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "offloaded to the" not in record.getMessage()
