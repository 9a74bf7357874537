"""What every command's config shares: :class:`ConfigError` and the coercions that let the
API accept what the CLI accepts (``layers=14``, ``layers="0-3"``, ``layers=[0, 7]``).

The configs themselves live with their feature (``interp.probe.config.ProbeConfig``,
``interp.finetune.config.FinetuneConfig``, ``interp.sae.config.SAEConfig``). Every config
that loads a model derives from :class:`ModelOptions`, so it takes the same four loading
options (``device``, ``dtype``, ``device_map``, ``max_memory``: one spelling, help text and
check everywhere, and the same flat keys in a saved ``config.json``); :func:`model_options`
hands them to :func:`interp.models.load_model`. Nothing here imports torch: what the machine
has (CUDA, bfloat16 support) is checked by ``load_model`` before anything loads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from interp.hooks import HookError, parse_layers


class ConfigError(ValueError):
    """An invalid option; the message names the option and the valid values."""


def as_layers(value: int | str | Iterable[int]) -> tuple[int, ...]:
    """``14``, ``"0-3"``, ``"0,7,14"`` or ``[7, 0]`` -> sorted unique layers.

    Raises :class:`HookError` (a ``ValueError``) naming the accepted forms.
    """
    if isinstance(value, bool):
        raise HookError(f"layers must be layer numbers, got {value!r}")
    if isinstance(value, int):
        layers: tuple[int, ...] = (value,)
    elif isinstance(value, str):
        layers = parse_layers(value)
    else:
        try:
            layers = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise HookError(
                f"cannot read layers {value!r}: give one layer (14), a range ('0-29'), "
                "a list ('0,7,14' or [0, 7, 14])"
            ) from None
    if not layers:
        raise ConfigError("layers is empty: give at least one layer, e.g. --layer 14")
    if min(layers) < 0:
        raise HookError(f"layers must be >= 0, got {layers}")
    return tuple(sorted(set(layers)))


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "a number"


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    hint: str = "",
    error: type[ValueError] = ConfigError,
) -> None:
    """Refuse ``value`` of option ``name`` unless it is a finite number (an ``int`` if
    ``integer``; never a ``bool``) within ``[low, high]`` (``low_open``/``high_open`` exclude
    an end). The message names the option and the valid range (``hint`` is appended to the
    range), so NaN, infinities and out-of-range values never reach the computation:
    ``c must be a finite number > 0 (or None for cross-validation), got nan``.
    """
    rng = _range_text(low, high, low_open, high_open) + hint
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        kind = "an integer" if integer else "a finite number"
        raise error(f"{name} must be {kind} {rng}, got {value!r}")
    if not math.isfinite(value):
        raise error(f"{name} must be a finite number {rng}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise error(f"{name} must be {rng}, got {value!r}")


# --- model loading options, shared by every config that loads a model -----------------------

#: Model dtypes: ``auto`` is bfloat16 on a CUDA GPU that supports it, float32 elsewhere.
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: How a model is split over the CUDA GPUs (accelerate's strategies); ``none`` loads it whole
#: on ``device``.
DEVICE_MAPS = ("none", "auto", "balanced", "sequential")
#: The device strings a config accepts (what the machine has is checked at load time).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_DEVICE_HELP = "auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1 or mps"
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MAX_MEMORY_FORM = "write budgets per device as 0=70GiB,1=70GiB (GPU index=size; cpu=0 allowed)"


def device_field(default: str = "auto") -> Any:
    """The ``device`` option: where a whole model is loaded (without ``device_map``)."""
    return field(default=default, kw_only=True, metadata={"help": f"device: {_DEVICE_HELP}"})


def dtype_field(default: str = "auto") -> Any:
    """The ``dtype`` option: the dtype of the model's weights and so of its activations
    (a command whose numbers need float32, such as weight differences, defaults to it)."""
    return field(
        default=default,
        kw_only=True,
        metadata={
            "help": "model dtype: auto (bfloat16 on a CUDA GPU that supports it, float32 "
            "elsewhere), float32, bfloat16 or float16; probes are fitted in float32 whatever "
            "it is",
            "choices": DTYPES,
        },
    )


def device_map_field() -> Any:
    """The ``device_map`` option: split the model's blocks over the CUDA GPUs."""
    return field(
        default="none",
        kw_only=True,
        metadata={
            "help": "split the model over the CUDA GPUs: auto or balanced (even split), "
            "sequential (fill GPU 0 first); none loads it whole on --device. Placements that "
            "would offload weights to the CPU or disk are refused before loading",
            "choices": DEVICE_MAPS,
        },
    )


def max_memory_field() -> Any:
    """The ``max_memory`` option: the weight budget of each device for ``device_map``."""
    return field(
        default=None,
        kw_only=True,
        metadata={
            "help": "with --device-map: weight budget per device, e.g. 0=70GiB,1=70GiB "
            "(default: what each GPU has free)"
        },
    )


def parse_max_memory(text: str) -> dict[int | str, int]:
    """``"0=70GiB,1=70GiB,cpu=0"`` -> ``{0: 70 * 2**30, 1: 70 * 2**30, "cpu": 0}`` (bytes).

    Keys are GPU indices or ``cpu``; sizes are bytes, or a number with B, KB, MB, GB, TB
    (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024). ``disk`` is refused: the
    TransformerBridge cannot run offloaded weights. Raises :class:`ConfigError`.
    """
    budgets: dict[int | str, int] = {}
    for part in str(text).split(","):
        device, sep, size = (p.strip() for p in part.partition("="))
        match = _MEMORY.match(size)
        if not sep or match is None or not (device.isdigit() or device.lower() in ("cpu", "disk")):
            raise ConfigError(
                f"cannot read max_memory {text!r} at {part.strip()!r}: {_MAX_MEMORY_FORM}"
            )
        if device.lower() == "disk":
            raise ConfigError(
                f"max_memory {text!r} gives a disk budget, but weights offloaded to disk cannot "
                "run under the TransformerBridge; give budgets for GPUs only"
            )
        key: int | str = int(device) if device.isdigit() else "cpu"
        if key in budgets:
            raise ConfigError(f"max_memory {text!r} names device {key!r} twice")
        unit = (match.group(2) or "").upper()
        scale = 1024 ** "BKMGT".index(unit[0]) if unit.endswith("IB") else _UNITS[unit[:1]]
        budgets[key] = int(float(match.group(1)) * scale)
    if not any(isinstance(k, int) and v > 0 for k, v in budgets.items()):
        raise ConfigError(f"max_memory {text!r} gives no GPU a budget; {_MAX_MEMORY_FORM}")
    return budgets


def check_model_options(config: ModelOptions) -> None:
    """Refuse a config's malformed model loading options (``device``, ``dtype``,
    ``device_map``, ``max_memory``) with a message naming the option and the fix. Only the
    spelling is checked here; :func:`interp.models.load_model` checks what the machine has."""
    if not DEVICE_PATTERN.match(str(config.device)):
        raise ConfigError(f"unknown device {config.device!r}; use auto, cpu, cuda, cuda:N or mps")
    if config.dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {config.dtype!r}; choose one of {', '.join(DTYPES)}")
    if config.device_map not in DEVICE_MAPS:
        raise ConfigError(
            f"unknown device_map {config.device_map!r}; choose one of {', '.join(DEVICE_MAPS)}"
        )
    if config.device_map != "none" and config.device not in ("auto", "cuda"):
        raise ConfigError(
            f"device_map {config.device_map!r} places the model on the CUDA GPUs itself, so "
            f"device {config.device!r} cannot be honoured: pass --device auto, or drop "
            "--device-map to load the model whole on one device"
        )
    if config.max_memory is not None:
        if config.device_map == "none":
            raise ConfigError(
                "max_memory is a per-GPU budget for device_map; add --device-map auto, or "
                "drop --max-memory"
            )
        parse_max_memory(config.max_memory)


@dataclass
class ModelOptions:
    """How a command's model is loaded: the base of every config that loads one.

    A config derives from it (``class ProbeConfig(ModelOptions)``) instead of declaring the
    four options itself, so each command has the same ``--device``, ``--dtype``,
    ``--device-map`` and ``--max-memory`` flags (:func:`interp.cli.parser_for` sees them as
    ordinary fields), an API user writes ``ProbeConfig(model=..., device_map="auto")``, and a
    saved ``config.json`` keeps them as flat keys. The fields are keyword-only, so a config's
    own required fields may follow them. A config whose numbers need another default
    redeclares the field (``dtype: str = dtype_field("float32")``). The model's name stays
    with each config: it is named and documented differently per command (``model``,
    ``base``, ``refusal_model``). A subclass's ``__post_init__`` calls this one.
    """

    device: str = device_field()
    dtype: str = dtype_field()
    device_map: str = device_map_field()
    max_memory: str | None = max_memory_field()

    def __post_init__(self) -> None:
        check_model_options(self)


def model_options(config: ModelOptions) -> dict[str, Any]:
    """The keyword arguments of :func:`interp.models.load_model` that ``config`` sets:
    ``load_model(config.model, **model_options(config))``."""
    return {
        "device": config.device,
        "dtype": config.dtype,
        "device_map": config.device_map,
        "max_memory": config.max_memory,
    }
