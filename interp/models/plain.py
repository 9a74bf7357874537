"""The plain Hugging Face model behind a ``TransformerBridge``, for hook-free generation.

Booting a bridge rewires the Hugging Face model in place: every block, attention, MLP, norm
and embedding of ``bridge.original_model`` is replaced by a bridge component that wraps the
original module (``component.original_component``) and runs hook points around it (for
attention, the bridge's own eager re-implementation). That costs time on every decoding
step, and its attention modules depend on how each transformers release drives the key-value
cache. Generation needs none of it unless a hook is meant to act on the replies.

:func:`plain_model` puts the original modules back for the length of a ``with`` block and
restores the bridge components afterwards (also on an error or an interrupt). Inside the
block ``bridge.original_model`` is the Hugging Face model as it was before booting: the same
parameter tensors (nothing is copied), the same attention implementation, and the same
accelerate hooks when the model was dispatched over devices (``device_map``) before booting.
:func:`needs_bridge` tells when a caller must run through the bridge instead: a hook
(steering, ablation) must see the forward passes, or the bridge's weights were processed.

The swap mutates the shared model: do not run the bridge from another thread while a
``plain_model`` block is open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def active_hooks(bridge: Any) -> list[str]:
    """Names of the bridge's hook points that carry hooks (``bridge.hooks(fwd_hooks=...)``,
    ``bridge.add_hook``, ``run_with_hooks``); empty when none does.

    Only hook points count: bridge components also carry the bridge's own internal hooks
    (e.g. a block's capture of its norm's input), which only serve its hook points, and
    hooks on the original Hugging Face modules run in the plain model too.
    """
    from transformer_lens.hook_points import HookPoint

    found = []
    for name, module in bridge.named_modules():
        if isinstance(module, HookPoint) and (
            module._forward_hooks
            or module._forward_pre_hooks
            or module._backward_hooks
            or module._backward_pre_hooks
        ):
            found.append(name)
    return found


def needs_bridge(bridge: Any) -> bool:
    """Whether a forward pass must go through the bridge rather than the plain model: hooks
    are active on its hook points (:func:`active_hooks`), or its weights were processed
    (``process_weights``/``enable_compatibility_mode``: layer norms folded, weights centred),
    which only the bridge's own forward undoes; the original modules no longer compute the
    Hugging Face model then."""
    return bool(getattr(bridge, "_weights_processed", False)) or bool(active_hooks(bridge))


def _unwrap(module: Any, swapped: list[tuple[Any, str, Any]]) -> None:
    """Replace each bridge component under ``module`` by the module it wraps, recording
    ``(parent, name, component)`` in ``swapped`` so that the swap can be undone."""
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    for name, child in list(module._modules.items()):
        if isinstance(child, GeneralizedComponent):
            original = child.original_component
            if original is None:
                raise RuntimeError(
                    f"bridge component {name!r} ({type(child).__name__}) wraps no Hugging Face "
                    "module, so the plain model cannot be restored; generate through the "
                    "bridge instead (add a hook, or report the architecture)"
                )
            module._modules[name] = original
            swapped.append((module, name, child))
            _unwrap(original, swapped)
        elif child is not None:
            _unwrap(child, swapped)


@contextmanager
def plain_model(bridge: Any) -> Iterator[Any]:
    """``bridge.original_model`` with the bridge's components swapped back for the Hugging
    Face modules they wrap, for the length of the ``with`` block.

    Calls of the yielded model (``forward``, ``generate``) run no hook point of the bridge;
    the weights are the bridge's own tensors, so they are never out of date. On exit every
    component is put back in place, in reverse order, whatever happened inside the block.
    """
    hf = bridge.original_model
    swapped: list[tuple[Any, str, Any]] = []
    try:
        _unwrap(hf, swapped)
        yield hf
    finally:
        for parent, name, component in reversed(swapped):
            parent._modules[name] = component
