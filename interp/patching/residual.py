"""Editing the residual stream while a model runs: directional ablation and addition.

:func:`residual_hooks` is a ``with`` block that registers torch forward(-pre) hooks on the
Hugging Face decoder layers behind the bridge's blocks. Those modules run in the bridge's
own forward pass and in the plain Hugging Face model that :func:`interp.text.generation.generate`
samples from (:mod:`interp.models.plain`), so one edit acts on teacher-forced passes and
on every decoding step alike, and generation keeps its fast hook-free path (the hooks are
not on the bridge's hook points). Every hook is removed on exit, also after an error.

A :class:`ResidualEdit` maps the hidden state ``[batch, pos, d_model]`` at one site to a new
one: ``resid_pre`` of layer ``L`` is what enters decoder layer ``L`` (Hugging Face
``hidden_states[L]``), ``resid_post`` what leaves it. :func:`ablation` projects a direction
out of the residual stream at every layer and position, as Arditi et al. (2024) do (the
stream entering the first layer and leaving every layer; a layer's attention output is
still seen by its own MLP, the one place a decoder-layer hook cannot reach);
:func:`addition` adds a fixed vector at one site. Directions move to each hidden state's
device and dtype, so a model split over devices works as it is.

:func:`last_token_states` reads the residual at the last prompt token through the same
hooks (a capture edit that returns its input unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.data.padding import pad_left
from interp.hooks import check_layer
from interp.models import LoadedModel
from interp.models.plain import needs_bridge, plain_model
from probes.directions import project_out, unit

#: Where an edit acts: entering (``resid_pre``) or leaving (``resid_post``) a decoder layer.
EDIT_SITES = ("resid_pre", "resid_post")

Edit = Callable[[Tensor], Tensor]


class SteeringError(ValueError):
    """A bad edit (unknown site, a block without a Hugging Face module); the message says the
    fix. A zero direction is a :class:`probes.directions.DirectionError`."""


@dataclass(frozen=True)
class ResidualEdit:
    """``fn`` applied to the hidden state at ``site`` of decoder layer ``layer``."""

    layer: int
    site: str
    fn: Edit


def decoder_layers(model: LoadedModel) -> list[torch.nn.Module]:
    """The Hugging Face decoder layers wrapped by the bridge's blocks, in order."""
    layers = []
    for i, block in enumerate(model.bridge.blocks):
        original = getattr(block, "original_component", None)
        if original is None:
            raise SteeringError(
                f"block {i} of {model.name} wraps no Hugging Face module, so its residual "
                "stream cannot be edited with torch hooks"
            )
        layers.append(original)
    return layers


def _pre_hook(fn: Edit) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

    return hook


def _post_hook(fn: Edit) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    return hook


@contextmanager
def residual_hooks(model: LoadedModel, edits: Sequence[ResidualEdit]) -> Iterator[None]:
    """Apply ``edits`` in every forward pass of ``model`` inside the ``with`` block (bridge
    runs, plain Hugging Face runs, generation); edits at one site run in the given order.
    The hooks are removed on exit, whatever happened inside."""
    layers = decoder_layers(model)
    for e in edits:
        if e.site not in EDIT_SITES:
            raise SteeringError(f"unknown edit site {e.site!r}; choose from {EDIT_SITES}")
        check_layer(e.layer, len(layers))
    handles = []
    try:
        for e in edits:
            module = layers[e.layer]
            if e.site == "resid_pre":
                handles.append(module.register_forward_pre_hook(_pre_hook(e.fn), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(_post_hook(e.fn)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def projection_edit(direction: Float[Tensor, " d_model"]) -> Edit:
    """The edit ``h - (h . u) u`` with ``u`` the unit direction (:func:`probes.directions.
    project_out`, computed in float32)."""
    d = direction.detach()
    unit(d)  # refuse a zero or non-finite direction now, not in the first forward pass

    def edit(h: Tensor) -> Tensor:
        return project_out(h, d)

    return edit


def add_vector(vector: Float[Tensor, " d_model"]) -> Edit:
    """The edit ``h + vector`` at every position."""
    v = vector.detach().float().flatten()

    def edit(h: Tensor) -> Tensor:
        return h + v.to(h.device, h.dtype)

    return edit


def ablation(direction: Float[Tensor, " d_model"], n_layers: int) -> list[ResidualEdit]:
    """Directional ablation (Arditi et al. 2024): ``direction`` projected out of the stream
    entering layer 0 and leaving every layer, at every position."""
    fn = projection_edit(direction)
    return [ResidualEdit(0, "resid_pre", fn)] + [
        ResidualEdit(layer, "resid_post", fn) for layer in range(n_layers)
    ]


def addition(
    direction: Float[Tensor, " d_model"], layer: int, site: str, alpha: float
) -> list[ResidualEdit]:
    """``alpha`` times the unit ``direction`` added at (``layer``, ``site``), every position."""
    return [ResidualEdit(layer, site, add_vector(alpha * unit(direction)))]


def plain_route(model: LoadedModel) -> Any:
    """A ``with`` block yielding the Hugging Face model to run: the plain modules
    (:func:`~interp.models.plain.plain_model`), or the bridge's model when a hook point
    is active, as generation chooses."""
    bridge = model.bridge
    return nullcontext(bridge.original_model) if needs_bridge(bridge) else plain_model(bridge)


def run_rows(hf: Any, rows: Sequence[Sequence[int]], pad_id: int, **kwargs: Any) -> Any:
    """One forward pass of ``hf`` on token rows padded on the left (positions count from
    each row's first token)."""
    ids, mask = pad_left(rows, pad_id)
    device = next(hf.get_input_embeddings().parameters()).device
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return hf(
        ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=False,
        **kwargs,
    )


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id)


def last_token_states(
    model: LoadedModel,
    rows: Sequence[Sequence[int]],
    sites: Sequence[tuple[int, str]],
    batch_size: int = 8,
) -> dict[tuple[int, str], Float[Tensor, "n d_model"]]:
    """The residual at each ``(layer, site)`` at the last token of each token row (float32,
    on the CPU), read by capture hooks during plain forward passes."""
    captured: dict[tuple[int, str], list[Tensor]] = {s: [] for s in sites}

    def capture(site: tuple[int, str]) -> Edit:
        def edit(h: Tensor) -> Tensor:
            captured[site].append(h[:, -1].detach().float().cpu())
            return h

        return edit

    edits = [ResidualEdit(layer, where, capture((layer, where))) for layer, where in sites]
    pad = pad_id_of(model.tokenizer)
    with residual_hooks(model, edits), plain_route(model) as hf, torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            run_rows(hf, rows[start : start + batch_size], pad, logits_to_keep=1)
    return {s: torch.cat(chunks) for s, chunks in captured.items()}
