"""Hook names: the one place that turns ``layer=14, site="resid_post"`` into a hook name.

TransformerLens names every capture point; the residual stream of block ``L`` is read at
``blocks.L.hook_resid_pre`` (input of the block, = Hugging Face ``hidden_states[L]``),
``blocks.L.hook_resid_mid`` (after attention) and ``blocks.L.hook_resid_post`` (output of
the block, = ``hidden_states[L+1]``, except after the last block, where Hugging Face also
applies the final norm). Each tensor there has shape ``[batch, pos, d_model]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal, get_args

Site = Literal["resid_pre", "resid_mid", "resid_post"]
SITES: tuple[str, ...] = get_args(Site)

#: Sites activation patching can write to: the residual stream and the two sublayer outputs.
PatchSite = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
PATCH_SITES: tuple[str, ...] = get_args(PatchSite)

_HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post)$")


class HookError(ValueError):
    """A layer, site or hook name that the model does not have."""


def check_site(site: str) -> Site:
    """Return ``site`` if it is a residual stream site, else raise an error listing them (the
    one check of a site name: configs and :func:`hook_name` call it)."""
    if site not in SITES:
        raise HookError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
    return site  # type: ignore[return-value]


def check_layer(layer: int, n_layers: int, loaded_of: int | None = None) -> int:
    """Return ``layer`` if the model has it, else raise an error naming the valid range.

    ``loaded_of``: the checkpoint's block count when only ``n_layers`` of them were loaded
    (``load_model(..., max_layer=...)``); a layer the checkpoint has but the load left out
    is refused with the fix (load it with a larger ``max_layer``).
    """
    if loaded_of is not None and n_layers <= layer < loaded_of:
        raise HookError(
            f"layer {layer} was not loaded: this model was loaded with blocks 0 to "
            f"{n_layers - 1} only (max_layer={n_layers - 1}) of its {loaded_of}; load it with "
            f"max_layer >= {layer}, or without max_layer"
        )
    if not 0 <= layer < n_layers:
        total = n_layers if loaded_of is None else max(n_layers, loaded_of)
        raise HookError(
            f"layer {layer} is out of range: this model has {total} blocks, "
            f"so use a layer from 0 to {total - 1}"
        )
    return layer


def hook_name(layer: int, site: str = "resid_post") -> str:
    """``hook_name(14)`` -> ``"blocks.14.hook_resid_post"``."""
    check_site(site)
    if layer < 0:
        raise HookError(f"layer must be >= 0, got {layer}")
    return f"blocks.{layer}.hook_{site}"


#: The hook of the layer-0 control reported beside every probe result: the token embeddings.
#: Named here, below both the activation cache (which adds it to the hooks it caches for a
#: probe) and the probe's controls (:mod:`interp.probe.controls`).
CONTROL_HOOK = hook_name(0, "resid_pre")


def patch_hook_name(layer: int, site: str) -> str:
    """``patch_hook_name(3, "attn_out")`` -> ``"blocks.3.hook_attn_out"`` (the output of the
    attention sublayer, ``[batch, pos, d_model]``; ``mlp_out`` likewise for the MLP)."""
    if site not in PATCH_SITES:
        raise HookError(f"unknown patch site {site!r}; choose from {', '.join(PATCH_SITES)}")
    if layer < 0:
        raise HookError(f"layer must be >= 0, got {layer}")
    return f"blocks.{layer}.hook_{site}"


def parse_hook_name(name: str) -> tuple[int, Site]:
    """Inverse of :func:`hook_name`; raises for anything that is not a residual hook."""
    match = _HOOK_RE.match(name)
    if match is None:
        raise HookError(
            f"unknown hook {name!r}: expected 'blocks.<layer>.hook_<site>' with site one of "
            f"{', '.join(SITES)} (build names with interp.hooks.hook_name)"
        )
    return int(match.group(1)), match.group(2)  # type: ignore[return-value]


def stop_layer(hooks: Iterable[str], n_layers: int) -> int | None:
    """The ``stop_at_layer`` that still computes every hook in ``hooks``.

    Every residual hook of block L needs the pass to reach block L; the bridge's early stop
    fires *before* block L's own hooks, so ``resid_pre`` of L too needs ``stop_at_layer=L+1``
    (measured on transformer-lens 3.9: stopping at L caches nothing there). Returns None when
    the whole model must run.
    """
    needed = 0
    for name in hooks:
        layer, _ = parse_hook_name(name)
        check_layer(layer, n_layers)
        needed = max(needed, layer + 1)
    return None if needed >= n_layers else needed


def parse_layers(text: str) -> tuple[int, ...]:
    """Parse ``"14"``, ``"0-29"`` or ``"0,7,14"`` (ranges inclusive) into sorted layers."""
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                layers.update(range(lo, hi + 1))
            else:
                layers.add(int(part))
        except ValueError:
            raise HookError(
                f"cannot read layers {text!r}: write one layer (14), a range (0-29) "
                "or a comma-separated list (0,7,14)"
            ) from None
    return tuple(sorted(layers))


def parse_layer_steps(text: str, n_layers: int | None = None) -> tuple[int, ...]:
    """Layers with an optional step, as patching sweeps take them: ``"0-29:3"`` -> 0, 3, ...,
    27 (every third of the listed layers); layers at or beyond ``n_layers`` are dropped."""
    spec, _, step = text.partition(":")
    try:
        every = int(step or 1)
        if every < 1:
            raise ValueError
    except ValueError:
        raise HookError(
            f"cannot read the step of layers {text!r}: write a positive step, e.g. 0-29:3"
        ) from None
    layers = [layer for layer in parse_layers(spec) if n_layers is None or layer < n_layers]
    return tuple(layers[::every])
