"""Activation patching with many patches per forward pass.

A patch writes the source run's activation at (site, layer, positions) into the target run.
``transformer_lens.patching`` runs one forward pass per patch. Here a chunk of patches runs
as one batch: row ``r`` of the batch is the target prompt with patch ``r`` applied, so hooks
write only their own rows, and each chunk starts at its patches' blocks and positions (see
:mod:`interp.patching.runner`). The unembedding runs only at the positions the metric reads,
which spares the ``[batch, pos, d_vocab]`` logits tensor. (Slicing before the final norm
breaks GPT-2, whose model reshapes the norm's output to the input's length.) A patch that
writes exactly the target's own activation (positions before the first token where two
prompts differ) cannot change the run: it is not run, and gets the clean target's value.

``resid_mid`` needs care with ``TransformerBridge`` (transformer-lens 3.9): its
``blocks.L.hook_resid_mid`` is an alias of ``ln2.hook_in``, the MLP norm's *input*. A hook
that edits that tensor in place (as ``transformer_lens.patching`` does) changes the residual
stream too, but one that returns a new tensor changes only what the MLP reads. Patching it
here sets the residual itself, without relying on aliasing: the attention output at the
patched positions becomes ``source_resid_mid - resid_pre``, so the residual after attention
equals the source's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.hooks import PATCH_SITES, check_layer, patch_hook_name
from interp.models import LoadedModel
from interp.patching.metrics import Metric
from interp.patching.result import PatchResult
from interp.patching.runner import Patch, Runner
from interp.patching.segments import PatchError, PatchInput, align


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


def _unchanged(
    patches: Sequence[Patch], source_acts: dict[str, Tensor], target_acts: dict[str, Tensor]
) -> list[int]:
    """Patches that write exactly the target's own activation (the two prompts agree up to
    there): they cannot change the run, so their value is the clean target's."""
    found = []
    for i, p in enumerate(patches):
        name = patch_hook_name(p.layer, p.site)
        src = source_acts[name][list(p.column.source_positions)]
        tgt = target_acts[name][list(p.column.target_positions)]
        if torch.equal(src, tgt.to(src.device)):
            found.append(i)
    return found


def plan_chunks(
    patches: Sequence[Patch], skip: Iterable[int], batch_size: int, resumes: bool
) -> list[list[int]]:
    """Patch indices of each forward pass. Resuming runs cost by the blocks and positions
    after a chunk's first patch, so patches are ordered by first position, then layer, and
    each chunk is run in layer order (rows join the batch at their layer)."""
    skipped = set(skip)
    todo = [i for i in range(len(patches)) if i not in skipped]
    if resumes:
        todo.sort(key=lambda i: (patches[i].first_position, patches[i].layer))
    chunks = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    if resumes:
        chunks = [sorted(c, key=lambda i: patches[i].layer) for c in chunks]
    return chunks


class Sweep:
    """One sweep, prepared: its patches, the clean runs and the plan of forward passes.

    :func:`patch_sweep` runs every chunk of :attr:`chunks`; a split sweep
    (:mod:`interp.patching.parallel`) runs some of them per worker and merges the values
    with :meth:`result`.
    """

    def __init__(
        self,
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
    ) -> None:
        self.target, self.source = target, source or target
        self.target_input, self.source_input = target_input, source_input or target_input
        self.metric, self.sites, self.segments, self.per = metric, tuple(sites), segments, per
        check_patchable(self.source, target)
        for site in self.sites:
            if site not in PATCH_SITES:
                raise PatchError(f"unknown site {site!r}; choose from {', '.join(PATCH_SITES)}")
        self.layers = tuple(range(target.n_layers)) if layers is None else tuple(layers)
        for layer in self.layers:
            check_layer(layer, target.n_layers)
        if batch_size < 1:
            raise PatchError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.columns = align(self.source_input, target_input, segments, per)
        self.patches = [
            Patch(site, layer, c)
            for site in self.sites
            for layer in self.layers
            for c in self.columns
        ]
        self.acts = source_activations(self.source, self.source_input, self._hooks())
        self.runner = Runner(target, target_input, metric)
        self.target_value, self.clean = self.runner.clean()
        source_runner = Runner(self.source, self.source_input, metric, resume=False)
        self.source_value, _ = source_runner.run([], {}, self.clean)
        self.unchanged = self._find_unchanged()
        self.chunks = plan_chunks(self.patches, self.unchanged, batch_size, self.runner.resumes)

    def _hooks(self) -> set[str]:
        return {patch_hook_name(p.layer, p.site) for p in self.patches}

    def _find_unchanged(self) -> list[int]:
        if self.source.fingerprint != self.target.fingerprint:
            return []
        own = source_activations(self.target, self.target_input, self._hooks())
        return _unchanged(self.patches, self.acts, own)

    def run_chunk(self, chunk: int) -> Tensor:
        """Metric values of the patches of chunk ``chunk`` (in the chunk's order)."""
        patches = [self.patches[i] for i in self.chunks[chunk]]
        got, _ = self.runner.run(patches, self.acts, self.clean)
        return got.float().cpu()

    def result(self, chunk_values: dict[int, Tensor]) -> PatchResult:
        """The sweep's result from the values of every chunk."""
        values = torch.full((len(self.patches),), float(self.target_value[0]))
        for chunk, got in chunk_values.items():
            values[self.chunks[chunk]] = got
        return PatchResult(
            values=values.reshape(len(self.sites), len(self.layers), len(self.columns)),
            sites=self.sites,
            layers=self.layers,
            columns=tuple(c.label for c in self.columns),
            metric=self.metric.name,
            target_value=float(self.target_value[0]),
            source_value=float(self.source_value[0]),
            meta=self.meta(),
        )

    def meta(self) -> dict[str, Any]:
        return {
            "target_model": self.target.name,
            "target_fingerprint": self.target.fingerprint,
            "source_model": self.source.name,
            "source_fingerprint": self.source.fingerprint,
            "segments": list(self.segments) if self.segments is not None else None,
            "per": self.per,
            "target_tokens": len(self.target_input),
            "source_tokens": len(self.source_input),
            "unchanged_patches": len(self.unchanged),
        }


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
    sweep = Sweep(
        target,
        target_input,
        metric,
        source=source,
        source_input=source_input,
        sites=sites,
        layers=layers,
        segments=segments,
        per=per,
        batch_size=batch_size,
    )
    values: dict[int, Tensor] = {}
    bar = tqdm(total=len(sweep.patches), desc="patching", unit="patch", disable=not progress)
    bar.update(len(sweep.unchanged))
    for chunk in range(len(sweep.chunks)):
        values[chunk] = sweep.run_chunk(chunk)
        bar.update(len(sweep.chunks[chunk]))
    bar.close()
    return sweep.result(values)
