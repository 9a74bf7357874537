"""Running chunks of patches on one prompt: the engine behind :func:`interp.patching.patch_sweep`.

A chunk of patches runs as one batch: patch ``j`` owns rows ``j * s .. (j + 1) * s - 1`` (``s``
rows per run: one per metric suffix). Every patch of a chunk that writes to the same hook is
applied by one indexed assignment, so a chunk costs one Python hook call per hook, not one
per patch.

When the metric reads only logits, a chunk does not redo what the clean run already did:

- **Blocks below a patch** compute what the clean run computed. The clean run records each
  block's input (hidden state and the keyword arguments the model passed: attention mask,
  rotary embeddings), and a patch's rows join the batch at their own block, so a patch at
  layer ``L`` runs ``n_layers - L`` blocks.
- **Positions before a patch** are unchanged by it (causal attention). A chunk whose patches
  all lie at or after position ``p0`` runs only positions ``p0..``: the clean keys and values
  of the earlier positions are handed to each attention layer as a key-value cache.
- The final norm and unembedding run only at the positions the metric reads (and the logit
  cap, where the model has one).

Both shortcuts are checked once per prompt against the clean run (the clean logits must come
out again); a model whose blocks do not take them runs every block at every position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from interp.hooks import patch_hook_name
from interp.models import LoadedModel
from interp.patching.metrics import Metric, RunOutput
from interp.patching.segments import Column, PatchInput

#: Block keyword arguments whose position axis is known: (name, axis) for slicing the
#: positions a chunk skips. Attention masks keep every key position (the attention layer
#: reads the rows of its queries itself); ``past_key_values`` is replaced.
_POSITION_AXIS = {"position_ids": -1, "cache_position": -1, "position_embeddings": -2}
_KEPT = {"attention_mask", "past_key_values", "use_cache", "encoder_attention_mask"}


@dataclass(frozen=True)
class Patch:
    """Write ``source[site, layer, source_positions]`` into the target's target_positions."""

    site: str
    layer: int
    column: Column

    @property
    def first_position(self) -> int:
        return min(self.column.target_positions)


def suffix_batch(
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


class _RecordKV:
    """A stand-in key-value cache that keeps what one attention layer computed."""

    def __init__(self) -> None:
        self.kv: list[tuple[Tensor, Tensor]] = []

    def update(self, k: Tensor, v: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        self.kv.append((k, v))
        return k, v


class _PrefixKV:
    """A key-value cache holding the clean keys and values of the positions a chunk skips."""

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    def update(self, k: Tensor, v: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return torch.cat([_rows(self.k.to(k), len(k)), k], -2), torch.cat(
            [_rows(self.v.to(v), len(v)), v], -2
        )


def _rows(x: Tensor, n: int) -> Tensor:
    """``x`` with ``n`` rows: as it is, or its one row broadcast (no copy)."""
    return x if len(x) == n else x.expand(n, *x.shape[1:])


def _tile(value: Any, n_rows: int, runs: int) -> Any:
    """Repeat a recorded block argument along its batch axis for ``runs`` runs."""
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == n_rows:
        return value.repeat(runs, *([1] * (value.ndim - 1)))
    if isinstance(value, tuple):
        return tuple(_tile(v, n_rows, runs) for v in value)
    return value


def _from_position(value: Any, axis: int, start: int) -> Any:
    """``value`` (a tensor or a tuple of them) from position ``start`` on along ``axis``."""
    if isinstance(value, tuple):
        return tuple(_from_position(v, axis, start) for v in value)
    if isinstance(value, Tensor):
        return value.narrow(axis, start, value.shape[axis] - start)
    return value


def _chain(fns: list[Callable[[Tensor], Tensor]]) -> Callable[..., Tensor]:
    def hook(act: Tensor, hook: object = None) -> Tensor:
        for fn in fns:
            act = fn(act)
        return act

    return hook


class _Writes:
    """Every write of a chunk at one hook: rows, positions and values, applied at once."""

    def __init__(self) -> None:
        self.rows: list[Tensor] = []
        self.pos: list[Tensor] = []
        self.values: list[Tensor] = []

    def add(self, rows: Tensor, pos: Tensor, value: Tensor) -> None:
        """Write ``value[i]`` at ``pos[i]`` of every row in ``rows``."""
        self.rows.append(rows.repeat_interleave(len(pos)))
        self.pos.append(pos.repeat(len(rows)))
        self.values.append(value.repeat(len(rows), 1))

    def index(self, device: torch.device) -> tuple[Tensor, Tensor]:
        return torch.cat(self.rows).to(device), torch.cat(self.pos).to(device)

    def value(self, device: torch.device) -> Tensor:
        return torch.cat(self.values).to(device)


def patch_hooks(
    patches: Sequence[Patch], n_rows: int, source_acts: dict[str, Tensor], offset: int
) -> list[tuple[str, Callable[..., Tensor]]]:
    """One forward hook per hook name that writes every patch of the chunk there; positions
    are shifted by ``offset`` (the first position the chunk runs)."""
    writes: dict[str, _Writes] = {}
    mids: dict[int, _Writes] = {}
    for j, patch in enumerate(patches):
        rows = torch.arange(j * n_rows, (j + 1) * n_rows)
        pos = torch.tensor(patch.column.target_positions) - offset
        value = source_acts[patch_hook_name(patch.layer, patch.site)][
            list(patch.column.source_positions)
        ]
        if patch.site == "resid_mid":
            mids.setdefault(patch.layer, _Writes()).add(rows, pos, value)
        else:
            writes.setdefault(patch_hook_name(patch.layer, patch.site), _Writes()).add(
                rows, pos, value
            )
    hooks: dict[str, list[Callable[[Tensor], Tensor]]] = {}
    for name, w in writes.items():
        hooks.setdefault(name, []).append(_write(w))
    for layer, w in mids.items():
        read, write = _write_mid(w)
        hooks.setdefault(patch_hook_name(layer, "resid_pre"), []).append(read)
        hooks.setdefault(patch_hook_name(layer, "attn_out"), []).append(write)
    return [(name, _chain(fns)) for name, fns in hooks.items()]


def _write(w: _Writes) -> Callable[[Tensor], Tensor]:
    def write(act: Tensor) -> Tensor:
        rows, pos = w.index(act.device)
        act = act.clone()
        act[rows, pos] = w.value(act.device).to(act.dtype)
        return act

    return write


def _write_mid(w: _Writes) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """``resid_mid = resid_pre + attn_out``: read ``resid_pre`` at the patched rows, then make
    ``attn_out`` supply the difference, so the residual after attention is the source's."""
    seen: dict[str, Tensor] = {}

    def read_pre(act: Tensor) -> Tensor:
        rows, pos = w.index(act.device)
        seen["pre"] = act[rows, pos]
        return act

    def write_attn(act: Tensor) -> Tensor:
        rows, pos = w.index(act.device)
        act = act.clone()
        act[rows, pos] = (w.value(act.device) - seen["pre"].to(act.device)).to(act.dtype)
        return act

    return read_pre, write_attn


class Runner:
    """Runs one model on one prompt with chunks of patches (see the module docstring)."""

    def __init__(
        self, model: LoadedModel, prompt: PatchInput, metric: Metric, resume: bool = True
    ) -> None:
        self.model, self.prompt, self.metric = model, prompt, metric
        ids, mask, self.k, self.row_of = suffix_batch(prompt.tokens, metric.suffixes())
        self.ids, self.mask = ids.to(model.device), mask.to(model.device)
        self.n_rows = len(ids)
        self.prompt_len = len(prompt)
        self.read = torch.arange(self.prompt_len - 1, self.prompt_len - 1 + self.k)
        self.block_inputs: list[tuple[Tensor, dict[str, Any]]] = []
        self.prefix_kv: list[tuple[Tensor, Tensor]] | None = None
        self.can_resume = resume and metric.needs_logits and not metric.capture(prompt)

    @property
    def resumes(self) -> bool:
        """Whether chunks start at their lowest patched block (the clean run was recorded)."""
        return self.can_resume and bool(self.block_inputs)

    @property
    def skips_positions(self) -> bool:
        """Whether chunks run only the positions from their first patched one on."""
        return self.resumes and self.prefix_kv is not None

    def clean(self) -> tuple[Tensor, RunOutput]:
        """The metric and output of the unpatched prompt; records what resuming needs."""
        value, out = self.run([], {}, None)
        if self.resumes:
            self._record_prefix(out)
        return value, out

    def run(
        self, patches: Sequence[Patch], source_acts: dict[str, Tensor], clean: RunOutput | None
    ) -> tuple[Tensor, RunOutput]:
        """Metric values of ``patches`` (one run each; an empty list runs the clean prompt).
        With resuming, ``patches`` must be sorted by layer (rows join at their layer)."""
        runs = max(1, len(patches))
        offset = min(p.first_position for p in patches) if self.skips_positions else 0
        fwd = patch_hooks(patches, self.n_rows, source_acts, offset) if patches else []
        captured: dict[str, Tensor] = {}
        for hook, positions in self.metric.capture(self.prompt).items():
            pos = torch.tensor(positions)

            def capture(
                act: Tensor, hook: object = None, name: str = hook, pos: Tensor = pos
            ) -> Tensor:
                captured[name] = act[:, pos.to(act.device)].mean(1)
                return act

            fwd.append((hook, capture))
        with torch.inference_mode():
            if patches and self.resumes:
                logits = self._resume([p.layer for p in patches], offset, fwd)
            else:
                logits = self._full(runs, fwd, record=self.can_resume and not patches)
        s = self.n_rows
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
            fwd = [*fwd, ("unembed.hook_in", lambda act, hook: act[:, read.to(act.device)])]
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

    def _resume(self, layers: Sequence[int], offset: int, fwd: list) -> Tensor:
        """Run the blocks from ``min(layers)`` on, positions ``offset..``: run ``j``'s rows
        join the batch at block ``layers[j]`` with the clean input of that block; then the
        final norm and unembedding at the read positions only."""
        bridge = self.model.bridge
        hidden: Tensor | None = None
        with bridge.hooks(fwd_hooks=fwd):
            for i in range(min(layers), self.model.n_layers):
                joining = sum(1 for layer in layers if layer == i)
                if joining:
                    new = self.block_inputs[i][0][:, offset:].repeat(joining, 1, 1)
                    hidden = new if hidden is None else torch.cat([hidden.to(new.device), new])
                assert hidden is not None
                kwargs = self._block_kwargs(i, len(hidden) // self.n_rows, offset)
                out = bridge.blocks[i](hidden, **kwargs)
                hidden = out[0] if isinstance(out, tuple) else out
            assert hidden is not None
            return self._logits(hidden[:, (self.read - offset).to(hidden.device)])

    def _logits(self, hidden: Tensor) -> Tensor:
        """Final norm, unembedding and the model's logit cap (Gemma-2: 30 tanh(x / 30))."""
        bridge = self.model.bridge
        logits = bridge.unembed(bridge.ln_final(hidden))
        cap = getattr(bridge.cfg, "output_logits_soft_cap", 0.0) or 0.0
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def _block_kwargs(self, layer: int, runs: int, offset: int = 0) -> dict[str, Any]:
        """Block ``layer``'s keyword arguments of the clean run, tiled to ``runs`` runs, from
        position ``offset`` on, with the clean keys and values before it as the cache. With one
        row per run nothing is tiled: arguments with a batch axis of 1 broadcast."""
        tile = self.n_rows > 1
        kwargs: dict[str, Any] = {}
        for key, value in self.block_inputs[layer][1].items():
            value = _tile(value, self.n_rows, runs) if tile else value
            if key in _POSITION_AXIS and offset:
                value = _from_position(value, _POSITION_AXIS[key], offset)
            kwargs[key] = value
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        kwargs["past_key_values"] = None
        if offset:
            assert self.prefix_kv is not None
            k, v = self.prefix_kv[layer]
            k, v = k[:, :, :offset], v[:, :, :offset]
            if tile:
                k, v = _tile(k, self.n_rows, runs), _tile(v, self.n_rows, runs)
            kwargs["past_key_values"] = _PrefixKV(k, v)
        return kwargs

    def _record_prefix(self, clean: RunOutput) -> None:
        """Keep each attention layer's clean keys and values, then check that running only
        the last prompt position on them gives the clean logits; else never skip positions."""
        unknown = {
            k
            for _, kwargs in self.block_inputs
            for k in kwargs
            if k not in {*_POSITION_AXIS, *_KEPT}
        }
        if unknown:
            return
        kv: list[tuple[Tensor, Tensor]] = []
        hidden = self.block_inputs[0][0]
        with torch.inference_mode():
            for i in range(self.model.n_layers):
                recorder = _RecordKV()
                kwargs = self._block_kwargs(i, 1) | {"past_key_values": recorder}
                out = self.model.bridge.blocks[i](hidden, **kwargs)
                hidden = out[0] if isinstance(out, tuple) else out
                if len(recorder.kv) != 1 or recorder.kv[0][0].shape[-2] != self.ids.shape[1]:
                    return  # this block takes no key-value cache
                kv.append(recorder.kv[0])
            self.prefix_kv = kv
            last = self.prompt_len - 1
            check = self._resume([0], last, [])
        expected = clean.logits[0] if clean.logits is not None else None
        got = check.reshape(self.n_rows, self.k, -1)[self.row_of]
        if expected is None or not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            self.prefix_kv = None
