"""Hook functions that put an SAE into a forward pass: splice its reconstruction in place of
the residual, or scale one feature's contribution.

Each returns a TransformerLens hook ``fn(act, hook) -> act`` for ``[batch, pos, d_model]``
activations, applied only where ``positions`` (a ``[batch, pos]`` bool mask) is True.
Use them with ``model.bridge.run_with_hooks(..., fwd_hooks=[(hook_name, fn)])``, which
removes them when the pass ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

HookFn = Callable[..., Tensor]


def _where(
    positions: Bool[Tensor, "batch pos"] | None, new: Tensor, act: Tensor
) -> Float[Tensor, "batch pos d_model"]:
    if positions is None:
        return new.to(act.dtype)
    return torch.where(positions[..., None].to(act.device), new.to(act.dtype), act)


def _on_sae(sae: Any, act: Tensor) -> Tensor:
    """``act`` in float32 on the SAE's device (a block of a model split over GPUs may run on
    another device than the SAE)."""
    return act.float().to(sae.W_dec.device)


def splice_hook(sae: Any, positions: Bool[Tensor, "batch pos"] | None = None) -> HookFn:
    """Replace the residual by the SAE's reconstruction ``sae(act)``."""

    def hook(act: Tensor, hook: object = None) -> Tensor:
        return _where(positions, sae(_on_sae(sae, act)).to(act.device), act)

    return hook


def replace_hook(
    value: Float[Tensor, " d_model"], positions: Bool[Tensor, "batch pos"] | None = None
) -> HookFn:
    """Replace the residual by a fixed vector (mean ablation, the loss baseline)."""

    def hook(act: Tensor, hook: object = None) -> Tensor:
        return _where(positions, value.to(act.device).expand_as(act), act)

    return hook


def feature_delta(
    sae: Any, act: Float[Tensor, "... d_model"], feature: int, scale: float
) -> Float[Tensor, "... d_model"]:
    """``(scale - 1) * f(act) * W_dec[feature]``: what scaling one feature adds to ``act``.

    ``scale=0`` ablates the feature, ``scale=1`` changes nothing, ``scale=2`` doubles it;
    the SAE's reconstruction error stays in the residual untouched.
    """
    coef = sae.encode(_on_sae(sae, act))[..., feature : feature + 1]
    return ((scale - 1.0) * coef * sae.W_dec[feature]).to(act.device)


def feature_edit_hook(
    sae: Any,
    feature: int,
    scale: float,
    positions: Bool[Tensor, "batch pos"] | None = None,
) -> HookFn:
    """Add :func:`feature_delta` to the residual (at ``positions``, default everywhere)."""

    def hook(act: Tensor, hook: object = None) -> Tensor:
        if scale == 1.0:
            return act
        return _where(positions, act + feature_delta(sae, act, feature, scale), act)

    return hook
