"""Activation patching with many patches per forward pass.

A patch writes the source run's activation at (site, layer, positions) into the target run.
``transformer_lens.patching`` runs one forward pass per patch. Here a chunk of patches runs
as one batch: row ``r`` of the batch is the target prompt with patch ``r`` applied, so hooks
write only their own rows. The unembedding runs only at the positions the metric reads (a
hook on ``unembed.hook_in`` slices the normed residual), which spares the
``[batch, pos, d_vocab]`` logits tensor. (Slicing before the final norm breaks GPT-2, whose
model reshapes the norm's output to the input's length.)

``resid_mid`` needs care with ``TransformerBridge`` (transformer-lens 3.9): its
``blocks.L.hook_resid_mid`` is an alias of ``ln2.hook_in``, the MLP norm's *input*. A hook
that edits that tensor in place (as ``transformer_lens.patching`` does) changes the residual
stream too, but one that returns a new tensor changes only what the MLP reads. Patching it
here sets the residual itself, without relying on aliasing: the attention output at the
patched positions becomes ``source_resid_mid - resid_pre``, so the residual after attention
equals the source's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.hooks import PATCH_SITES, check_layer, patch_hook_name
from interp.models import LoadedModel
from interp.patching.metrics import Metric, RunOutput
from interp.patching.result import PatchResult
from interp.patching.segments import Column, PatchError, PatchInput, align


@dataclass(frozen=True)
class Patch:
    """Write ``source[site, layer, source_positions]`` into the target's target_positions."""

    site: str
    layer: int
    column: Column


def check_patchable(source: LoadedModel, target: LoadedModel) -> None:
    """Raise :class:`PatchError` naming the mismatch if activations of ``source`` cannot be
    written into ``target`` (other shapes or another tokenizer)."""
    if source is target:
        return
    for what in ("n_layers", "d_model"):
        a, b = getattr(source, what), getattr(target, what)
        if a != b:
            raise PatchError(
                f"cannot patch {source.name} into {target.name}: {what} is {a} in the source "
                f"and {b} in the target; patching needs two models of the same architecture"
            )
    if source.tokenizer.get_vocab() != target.tokenizer.get_vocab():
        raise PatchError(
            f"cannot patch {source.name} into {target.name}: their tokenizers differ "
            f"({len(source.tokenizer)} vs {len(target.tokenizer)} tokens), so the same "
            "position does not hold the same token"
        )


def _suffix_batch(
    prompt: Tensor, suffixes: Sequence[Tensor]
) -> tuple[Tensor, Tensor, int, list[int]]:
    """The rows a run needs: prompt + suffix without its last token, right-padded.

    Suffixes that give the same row share it (two one-token continuations need only the
    prompt). Returns ids, attention mask, ``k`` (the number of logit positions read, from the
    last prompt token on) and each suffix's row. Right padding leaves every real position
    where it was.
    """
    k = max(1, *(len(s) for s in suffixes))
    width = len(prompt) + k - 1
    rows: dict[tuple[int, ...], int] = {}
    row_of = []
    for s in suffixes:
        row = torch.cat([prompt, s[:-1].to(prompt.dtype)]) if len(s) else prompt
        row_of.append(rows.setdefault(tuple(row.tolist()), len(rows)))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for row, i in rows.items():
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask, k, row_of


class _Runner:
    """Runs one model on one prompt with groups of patches; the pieces of a sweep.

    Blocks below a patch compute exactly what the clean run computed, so when a metric
    reads only logits, a chunk of patches starts at its lowest patched block: the clean
    run records every block's input (hidden state and the keyword arguments the model
    passed: attention mask, rotary embeddings), and the chunk re-runs only the blocks from
    there on, through the bridge's own block modules so every hook still fires.
    """

    def __init__(
        self, model: LoadedModel, prompt: PatchInput, metric: Metric, resume: bool = True
    ) -> None:
        self.model, self.prompt, self.metric = model, prompt, metric
        ids, mask, self.k, self.row_of = _suffix_batch(prompt.tokens, metric.suffixes())
        self.ids, self.mask = ids.to(model.device), mask.to(model.device)
        self.n_rows = len(ids)
        self.prompt_len = len(prompt)
        self.read = torch.arange(self.prompt_len - 1, self.prompt_len - 1 + self.k)
        self.block_inputs: list[tuple[Tensor, dict[str, Any]]] = []
        self.can_resume = resume and metric.needs_logits and not metric.capture(prompt)

    def run(
        self, patches: Sequence[Patch], source_acts: dict[str, Tensor], clean: RunOutput | None
    ) -> tuple[Tensor, RunOutput]:
        """Metric values of ``patches`` (one run each; an empty list runs the clean prompt)."""
        runs = max(1, len(patches))
        s = self.n_rows
        hooks: dict[str, list[Callable[[Tensor], Tensor]]] = {}
        for r, patch in enumerate(patches):
            self._add_patch(hooks, patch, torch.arange(r * s, (r + 1) * s), source_acts)
        captured: dict[str, Tensor] = {}
        for hook, positions in self.metric.capture(self.prompt).items():
            pos = torch.tensor(positions, device=self.model.device)

            def capture(act: Tensor, hook=hook, pos=pos) -> Tensor:
                captured[hook] = act[:, pos].mean(1)
                return act

            hooks.setdefault(hook, []).append(capture)
        fwd = [(name, _chain(fns)) for name, fns in hooks.items()]
        with torch.inference_mode():
            if patches and self.can_resume and self.block_inputs:
                logits = self._resume(min(p.layer for p in patches), runs, fwd)
            else:
                logits = self._full(runs, fwd, record=self.can_resume and not patches)
        out = RunOutput(
            logits=logits.reshape(runs, s, self.k, -1)[:, self.row_of]
            if self.metric.needs_logits
            else None,
            acts={h: a.reshape(runs, s, -1)[:, 0] for h, a in captured.items()},
        )
        return self.metric(out, clean if clean is not None else out), out

    def _full(self, runs: int, fwd: list, record: bool) -> Tensor:
        """A whole forward pass; with ``record``, keep every block's inputs for resuming."""
        bridge = self.model.bridge
        stop = None
        if self.metric.needs_logits:
            read = self.read.to(self.model.device)
            fwd = [*fwd, ("unembed.hook_in", lambda act, hook: act[:, read])]
        else:
            deepest = max(int(h.split(".")[1]) for h in self.metric.capture(self.prompt))
            stop = deepest + 1 if deepest + 1 < self.model.n_layers else None

        def keep(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else kwargs.get("hidden_states")
            rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            self.block_inputs.append((hidden, rest))

        blocks = bridge.blocks if record else []
        handles = [b.register_forward_pre_hook(keep, with_kwargs=True) for b in blocks]
        try:
            return bridge.run_with_hooks(
                self.ids.repeat(runs, 1),
                attention_mask=self.mask.repeat(runs, 1),
                fwd_hooks=fwd,
                stop_at_layer=stop,
            )
        finally:
            for handle in handles:
                handle.remove()
            if record and len(self.block_inputs) != self.model.n_layers:
                self.block_inputs = []  # not one call per block: never resume

    def _resume(self, first: int, runs: int, fwd: list) -> Tensor:
        """Run blocks ``first..`` on the clean inputs of block ``first``, then the final norm
        and unembedding at the read positions only (and the logit cap, where there is one)."""
        bridge = self.model.bridge
        hidden = self.block_inputs[first][0].repeat(runs, 1, 1)
        with bridge.hooks(fwd_hooks=fwd):
            for i in range(first, self.model.n_layers):
                # each block's own clean keyword arguments: they differ between layers where
                # layers differ (Gemma-2/3: sliding-window masks, Gemma-3: local rotary base)
                kwargs = self._block_kwargs(i, runs)
                out = bridge.blocks[i](hidden, **kwargs)
                hidden = out[0] if isinstance(out, tuple) else out
            logits = bridge.unembed(bridge.ln_final(hidden[:, self.read.to(hidden.device)]))
        # the model's forward caps logits after the unembedding (Gemma-2: 30 tanh(x / 30))
        cap = getattr(bridge.cfg, "output_logits_soft_cap", 0.0) or 0.0
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def _block_kwargs(self, layer: int, runs: int) -> dict[str, Any]:
        """Block ``layer``'s keyword arguments of the clean run, tiled to ``runs`` runs and
        without the key-value cache."""
        kwargs = {k: _tile(v, self.n_rows, runs) for k, v in self.block_inputs[layer][1].items()}
        if "past_key_values" in kwargs:
            kwargs["past_key_values"] = None
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        return kwargs

    def _add_patch(
        self,
        hooks: dict[str, list[Callable[[Tensor], Tensor]]],
        patch: Patch,
        rows: Tensor,
        source_acts: dict[str, Tensor],
    ) -> None:
        dev = self.model.device
        tgt = torch.tensor(patch.column.target_positions, device=dev)
        rows_b, tgt_b = rows.to(dev)[:, None], tgt[None, :]
        value = source_acts[patch_hook_name(patch.layer, patch.site)][
            list(patch.column.source_positions)
        ]
        if patch.site != "resid_mid":

            def write(act: Tensor) -> Tensor:
                act = act.clone()
                act[rows_b, tgt_b] = value.to(act.dtype)
                return act

            hooks.setdefault(patch_hook_name(patch.layer, patch.site), []).append(write)
            return
        # resid_mid = resid_pre + attn_out: make attn_out supply the difference.
        seen: dict[str, Tensor] = {}

        def read_pre(act: Tensor) -> Tensor:
            seen["pre"] = act[rows_b, tgt_b]
            return act

        def write_attn(act: Tensor) -> Tensor:
            act = act.clone()
            act[rows_b, tgt_b] = (value - seen["pre"]).to(act.dtype)
            return act

        hooks.setdefault(patch_hook_name(patch.layer, "resid_pre"), []).append(read_pre)
        hooks.setdefault(patch_hook_name(patch.layer, "attn_out"), []).append(write_attn)


def _tile(value: Any, n_rows: int, runs: int) -> Any:
    """Repeat a recorded block argument along its batch axis for ``runs`` runs."""
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == n_rows:
        return value.repeat(runs, *([1] * (value.ndim - 1)))
    if isinstance(value, tuple):
        return tuple(_tile(v, n_rows, runs) for v in value)
    return value


def _chain(fns: list[Callable[[Tensor], Tensor]]) -> Callable[..., Tensor]:
    def hook(act: Tensor, hook: object = None) -> Tensor:
        for fn in fns:
            act = fn(act)
        return act

    return hook


def source_activations(
    model: LoadedModel, prompt: PatchInput, hooks: Iterable[str]
) -> dict[str, Tensor]:
    """``hook -> [pos, d_model]`` of one clean run (``resid_mid`` read through its alias)."""
    names = sorted(set(hooks))
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(
            prompt.tokens[None].to(model.device), names_filter=names
        )
    missing = [n for n in names if n not in cache]
    if missing:
        raise PatchError(f"the source run produced no activation for {missing}")
    return {n: cache[n][0] for n in names}


def patch_sweep(
    target: LoadedModel,
    target_input: PatchInput,
    metric: Metric,
    *,
    source: LoadedModel | None = None,
    source_input: PatchInput | None = None,
    sites: Sequence[str] = ("resid_pre",),
    layers: Sequence[int] | None = None,
    segments: Sequence[str] | None = None,
    per: str = "position",
    batch_size: int = 32,
    progress: bool = True,
) -> PatchResult:
    """Patch ``source`` (default: the target model) run on ``source_input`` (default: the
    target's prompt) into ``target`` on ``target_input``, at every site x layer x column.

    Columns are every position when both prompts have the same length, else the positions of
    ``segments`` matched by offset (see :func:`interp.patching.segments.align`); ``per=
    "segment"`` patches each segment whole. ``batch_size`` patches run per forward pass.
    Returns raw metric values with the clean target and clean source values, so
    ``result.normalised`` is 0 where the patch left the target unchanged and 1 where it
    reproduced the source.
    """
    source = source or target
    source_input = source_input or target_input
    check_patchable(source, target)
    for site in sites:
        if site not in PATCH_SITES:
            raise PatchError(f"unknown site {site!r}; choose from {', '.join(PATCH_SITES)}")
    layers = tuple(range(target.n_layers)) if layers is None else tuple(layers)
    for layer in layers:
        check_layer(layer, target.n_layers)
    if batch_size < 1:
        raise PatchError(f"batch_size must be >= 1, got {batch_size}")
    columns = align(source_input, target_input, segments, per)
    patches = [Patch(site, layer, c) for site in sites for layer in layers for c in columns]
    acts = source_activations(
        source, source_input, {patch_hook_name(p.layer, p.site) for p in patches}
    )

    target_runner = _Runner(target, target_input, metric)
    target_value, clean = target_runner.run([], {}, None)
    source_value, _ = _Runner(source, source_input, metric, resume=False).run([], {}, clean)
    values = torch.empty(len(patches))
    bar = tqdm(total=len(patches), desc="patching", unit="patch", disable=not progress)
    for start in range(0, len(patches), batch_size):
        chunk = patches[start : start + batch_size]
        got, _ = target_runner.run(chunk, acts, clean)
        values[start : start + len(chunk)] = got.float().cpu()
        bar.update(len(chunk))
    bar.close()
    return PatchResult(
        values=values.reshape(len(sites), len(layers), len(columns)),
        sites=tuple(sites),
        layers=layers,
        columns=tuple(c.label for c in columns),
        metric=metric.name,
        target_value=float(target_value[0]),
        source_value=float(source_value[0]),
        meta={
            "target_model": target.name,
            "target_fingerprint": target.fingerprint,
            "source_model": source.name,
            "source_fingerprint": source.fingerprint,
            "segments": list(segments) if segments is not None else None,
            "per": per,
            "target_tokens": len(target_input),
            "source_tokens": len(source_input),
        },
    )
