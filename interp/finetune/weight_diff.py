"""Where, how much and in which directions a fine-tuned model's weights differ from its base.

:func:`weight_diff` compares two Llama-architecture checkpoints of the same shapes (plain
Hugging Face models, state dicts, or :class:`~interp.models.LoadedModel`) and reports, for
every layer and every projection matrix (``q_proj k_proj v_proj o_proj gate_proj up_proj
down_proj``), the change ``dW = W_variant - W_base``:

- ``norm``: Frobenius norm ``||dW||``; ``relative_norm``: ``||dW|| / ||W_base||``;
- ``effective_rank``: ``exp(H(p))``, the exponential of the entropy of the energy shares
  ``p_i = s_i^2 / sum_j s_j^2`` of the singular values ``s`` of ``dW`` (1 for a rank-1 change,
  ``r`` for ``r`` equal singular values). Roy & Vetterli (2007) define it with ``s_i / sum s``;
  squaring keeps a full-rank noise floor (many tiny values) from swamping a rank-1 change: for
  a rank-1 change of norm 0.3 plus Gaussian noise of std 1e-4 in SmolLM2's ``down_proj`` their
  version gives 360, this one 2.3;
- ``rank90``: how many singular values hold 90% of the energy ``sum s_i^2``;
- ``top_singular_values``: the ``top_k`` largest singular values;
- with a probe direction ``p`` (a ``d_model`` vector in the raw residual space, e.g.
  ``Probe.direction``): ``|cos(p, v_i)|`` for the top-k singular directions ``v_i`` on the
  matrix's residual-stream side (the output side for ``o_proj``/``down_proj``, which write into
  the residual stream; the input side for the others, which read from it) and their max.
  ``random_max_cos`` is the same max for a uniformly random direction (mean over 20,000 draws
  with a fixed seed; ``random_max_cos_p95`` its 95th percentile), so a value can be judged:
  for ``d_model = 576`` and ``k = 8`` chance gives about 0.07 (p95 0.10).

The embeddings and an untied ``lm_head`` are reported separately (``extra``) when they
changed, with the ``d_model`` side being their columns; any other changed tensor (norm
weights, biases) is listed in ``other`` with its norms. Differences and norms are taken in
float64, SVDs in float32 (``dtype``) on the device of the base weights; on SmolLM2-135M
(30 layers x 7 matrices) the whole comparison takes about 35 s on a 2-core CPU shared with
other jobs (single-threaded SVDs, see ``cpu_threads``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

#: The projection matrices of a Llama block, in the order of the block.
MATRICES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Matrices that write into the residual stream: their d_model side is the output side.
WRITES_RESIDUAL = frozenset({"o_proj", "down_proj"})
EXTRA = {"model.embed_tokens.weight": "embed_tokens", "lm_head.weight": "lm_head"}

_LAYER_MATRIX = re.compile(
    r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(" + "|".join(MATRICES) + r")\.weight$"
)

DEFINITIONS = {
    "norm": "Frobenius norm of dW = W_variant - W_base",
    "relative_norm": "||dW||_F / ||W_base||_F",
    "effective_rank": "exp(entropy of p_i = s_i^2 / sum(s^2)) over the singular values s of dW "
    "(Roy & Vetterli's effective rank on the energy shares); 0 when dW = 0",
    "rank90": "number of singular values holding 90% of sum(s^2)",
    "probe_cos": "|cos| between the probe direction and each of the top-k singular directions "
    "of dW on its d_model side (output side for o_proj/down_proj, input side otherwise)",
    "random_max_cos": "mean over 20,000 uniformly random unit directions of the max |cos| with "
    "k orthonormal directions in d_model dims (fixed seed); random_max_cos_p95: 95th pct",
}


class WeightDiffError(ValueError):
    """Two checkpoints that cannot be compared (other parameter names or shapes)."""


@dataclass
class MatrixDiff:
    """The change of one weight matrix. ``layer`` is ``None`` for embeddings and lm_head."""

    name: str
    layer: int | None
    matrix: str
    shape: tuple[int, ...]
    side: str  # the d_model axis of the stored [out, in] weight: "output" (rows) or "input"
    norm: float
    base_norm: float
    relative_norm: float
    effective_rank: float
    rank90: int
    top_singular_values: list[float]
    probe_cos: list[float] | None = None
    probe_max_cos: float | None = None

    @property
    def changed(self) -> bool:
        return self.norm > 0


@dataclass
class ParamDiff:
    """A changed tensor that is not a projection matrix (norm weights, biases)."""

    name: str
    shape: tuple[int, ...]
    norm: float
    base_norm: float
    relative_norm: float


@dataclass
class WeightDiff:
    """Per-(layer, matrix) weight changes; ``cells`` is layer-major over ``layers x matrices``."""

    layers: list[int]
    matrices: list[str]
    cells: list[MatrixDiff]
    extra: list[MatrixDiff] = field(default_factory=list)
    other: list[ParamDiff] = field(default_factory=list)
    top_k: int = 8
    d_model: int = 0
    random_max_cos: float | None = None
    random_max_cos_p95: float | None = None
    base: str = ""
    variant: str = ""
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))

    @property
    def axes(self) -> tuple[str, str]:
        return ("layer", "matrix")

    def cell(self, layer: int, matrix: str) -> MatrixDiff:
        if layer not in self.layers or matrix not in self.matrices:
            raise KeyError(
                f"no cell ({layer}, {matrix!r}); layers {self.layers[0]}-{self.layers[-1]}, "
                f"matrices {self.matrices}"
            )
        return self.cells[
            self.layers.index(layer) * len(self.matrices) + self.matrices.index(matrix)
        ]

    def grid(self, metric: str) -> Float[Tensor, "layer matrix"]:
        """One metric (a :class:`MatrixDiff` field) as a ``[layer, matrix]`` tensor; missing
        values (no probe, unchanged matrix) are NaN."""
        values = [getattr(c, metric) for c in self.cells]
        flat = torch.tensor([math.nan if v is None else float(v) for v in values])
        return flat.reshape(len(self.layers), len(self.matrices))

    def largest(self, n: int = 10, by: str = "relative_norm") -> list[MatrixDiff]:
        """The ``n`` changed matrices (layers, embeddings, lm_head) with the largest ``by``."""
        changed = [c for c in [*self.cells, *self.extra] if c.changed]
        return sorted(changed, key=lambda c: getattr(c, by), reverse=True)[:n]

    def table(self, n: int | None = 10, by: str = "relative_norm") -> str:
        """A text table of the ``n`` largest changes (all when ``None``), sorted by ``by``."""
        rows = self.largest(n if n is not None else len(self.cells) + len(self.extra), by)
        probe = any(c.probe_max_cos is not None for c in self.cells + self.extra)
        head = f"{'layer':>5} | {'matrix':<12} | {'||dW||':>9} | {'rel':>8} | {'erank':>6} | "
        head += f"{'r90':>4} | top singular values"
        if probe:
            head = head.replace(" | top", " | probe max|cos| | top")
        lines = [
            f"Weight change {self.variant or 'variant'} - {self.base or 'base'} "
            f"({sum(c.changed for c in self.cells)}/{len(self.cells)} layer matrices changed), "
            f"top {len(rows)} by {by}:",
            head,
        ]
        for c in rows:
            layer = "-" if c.layer is None else str(c.layer)
            svals = ", ".join(f"{s:.3g}" for s in c.top_singular_values[:4])
            line = f"{layer:>5} | {c.matrix:<12} | {c.norm:9.4g} | {c.relative_norm:8.2e} | "
            line += f"{c.effective_rank:6.1f} | {c.rank90:>4} | "
            if probe:
                cos = "-" if c.probe_max_cos is None else f"{c.probe_max_cos:.3f}"
                line += f"{cos:>15} | "
            lines.append(line + svals)
        if not rows:
            lines.append("  (no weight changed)")
        if probe and self.random_max_cos is not None:
            lines.append(
                f"probe max|cos| over the top {self.top_k} singular directions; a random "
                f"direction gets {self.random_max_cos:.3f} on average "
                f"(95th pct {self.random_max_cos_p95:.3f}) in {self.d_model} dims"
            )
        changed_other = [p for p in self.other if p.norm > 0]
        if changed_other:
            biggest = max(changed_other, key=lambda p: p.relative_norm)
            lines.append(
                f"{len(changed_other)} other tensors changed (norms, biases); largest relative "
                f"change {biggest.relative_norm:.2e} in {biggest.name}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; :meth:`from_dict` reads it back."""
        return {**asdict(self), "axes": list(self.axes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightDiff:
        """Inverse of :meth:`to_dict`; top-level keys it does not know (``axes``, a script's
        own metadata) are ignored."""

        def matrix(d: Mapping[str, Any]) -> MatrixDiff:
            return MatrixDiff(**{**d, "shape": tuple(d["shape"])})

        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["cells"] = [matrix(c) for c in data["cells"]]
        fields["extra"] = [matrix(c) for c in data.get("extra", [])]
        fields["other"] = [ParamDiff(**{**p, "shape": tuple(p["shape"])}) for p in data["other"]]
        return cls(**fields)


# --- inputs --------------------------------------------------------------------------------


def named_weights(model: Any) -> dict[str, Tensor]:
    """A model's tensors by Hugging Face name: from a state dict, an ``nn.Module`` or a
    ``LoadedModel`` (its bridge's original model). The bridge's wrapper segments
    (``._original_component``) are dropped from names, and a tensor that shares storage with
    an earlier one (tied embeddings, the bridge's aliases) is kept once, under its first name;
    an ``lm_head.weight`` equal to the embeddings (tied, then copied) is dropped."""
    if hasattr(model, "bridge"):
        model = model.bridge.original_model
    if isinstance(model, torch.nn.Module):
        model = model.state_dict()
    if not isinstance(model, Mapping):
        raise TypeError(
            f"expected a torch.nn.Module, a state dict or a LoadedModel, got {type(model).__name__}"
        )
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for name, tensor in model.items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        out.setdefault(name.replace("._original_component", ""), tensor)
    head, embed = out.get("lm_head.weight"), out.get("model.embed_tokens.weight")
    tied_copy = (
        head is not None
        and embed is not None
        and head.shape == embed.shape
        and torch.equal(head, embed.to(head.device))
    )
    if tied_copy:  # tied embeddings stored as two tensors
        del out["lm_head.weight"]
    return out


def _check_comparable(base: dict[str, Tensor], variant: dict[str, Tensor]) -> None:
    """Refuse two checkpoints whose parameter names or shapes differ."""
    for name, tensor in base.items():
        if name not in variant:
            raise WeightDiffError(
                f"parameter {name!r} (shape {tuple(tensor.shape)}) is in the base but not in the "
                "variant: the two models have different architectures or tied weights"
            )
        if variant[name].shape != tensor.shape:
            raise WeightDiffError(
                f"parameter {name!r} has shape {tuple(tensor.shape)} in the base but "
                f"{tuple(variant[name].shape)} in the variant: compare checkpoints of one "
                "architecture (merge LoRA adapters into the weights first)"
            )
    for name, tensor in variant.items():
        if name not in base:
            raise WeightDiffError(
                f"parameter {name!r} (shape {tuple(tensor.shape)}) is in the variant but not in "
                "the base: the two models have different architectures or tied weights"
            )


# --- maths ---------------------------------------------------------------------------------


def effective_rank(singular_values: Tensor) -> float:
    """``exp(H(p))`` with ``p = s^2 / sum s^2`` (Roy & Vetterli's effective rank on the energy
    shares); 0 for an all-zero matrix."""
    s = singular_values.double() ** 2
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def energy_rank(singular_values: Tensor, fraction: float = 0.9) -> int:
    """How many of the (descending) singular values hold ``fraction`` of ``sum s^2``."""
    energy = singular_values.double() ** 2
    total = energy.sum()
    if total <= 0:
        return 0
    cumulative = energy.cumsum(0) / total
    return int((cumulative < fraction - 1e-12).sum()) + 1


def random_max_cos(
    d: int, k: int, n: int = 20_000, seed: int = 0, quantile: float = 0.95
) -> tuple[float, float]:
    """Mean and ``quantile`` of ``max_i |cos(x, e_i)|`` over ``k`` orthonormal directions for
    ``n`` uniformly random unit vectors ``x`` in ``d`` dims (by symmetry, the first ``k``
    coordinates of a normalised Gaussian vector)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    top = (x[:, :k].abs() / x.norm(dim=1, keepdim=True)).max(dim=1).values
    return float(top.mean()), float(torch.quantile(top, quantile))


def _matrix_diff(
    name: str,
    layer: int | None,
    matrix: str,
    base: Tensor,
    variant: Tensor,
    side: str,
    probe: Tensor | None,
    top_k: int,
    dtype: torch.dtype,
) -> MatrixDiff:
    device = base.device
    w = base.detach().to(device, torch.float64)
    dw = variant.detach().to(device, torch.float64) - w  # exact for float32 weights
    norm = float(torch.linalg.matrix_norm(dw))
    base_norm = float(torch.linalg.matrix_norm(w))
    k = min(top_k, *dw.shape)
    if norm == 0:
        return MatrixDiff(
            name, layer, matrix, tuple(dw.shape), side, 0.0, base_norm, 0.0, 0.0, 0, [0.0] * k
        )
    u, s, vh = torch.linalg.svd(dw.to(dtype), full_matrices=False)
    result = MatrixDiff(
        name=name,
        layer=layer,
        matrix=matrix,
        shape=tuple(dw.shape),
        side=side,
        norm=norm,
        base_norm=base_norm,
        relative_norm=norm / base_norm if base_norm > 0 else math.inf,
        effective_rank=effective_rank(s),
        rank90=energy_rank(s),
        top_singular_values=[float(v) for v in s[:k]],
    )
    if probe is not None:
        directions = u[:, :k].T if side == "output" else vh[:k]  # [k, d_model], unit rows
        cos = (directions.double() @ probe.to(device)).abs()
        result.probe_cos = [float(v) for v in cos]
        result.probe_max_cos = float(cos.max())
    return result


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _layer_matrices(
    weights: Mapping[str, Tensor],
) -> tuple[dict[tuple[int, str], str], list[int], int]:
    """Where each projection matrix is: ``{(layer, matrix): parameter name}``, the layers in
    order and ``d_model``; refuses a checkpoint without Llama projection matrices or with a
    layer that lacks one of them."""
    found: dict[tuple[int, str], str] = {}
    for name in weights:
        match = _LAYER_MATRIX.search(name)
        if match:
            found[(int(match.group(1)), match.group(2))] = name
    if not found:
        raise WeightDiffError(
            "no Llama projection matrices (layers.N.self_attn.q_proj.weight, ...) found; "
            f"first parameter names: {list(weights)[:5]}"
        )
    layers = sorted({layer for layer, _ in found})
    missing = [(ly, m) for ly in layers for m in MATRICES if (ly, m) not in found]
    if missing:
        raise WeightDiffError(f"layer {missing[0][0]} has no {missing[0][1]} weight")
    d_model = weights[found[(layers[0], "q_proj")]].shape[1]
    return found, layers, d_model


def _unit_probe(probe_direction: Any, d_model: int) -> Tensor | None:
    """The probe direction as a float64 unit vector (None without one); a fitted probe gives
    its ``direction``. A vector of another size or the zero vector is refused."""
    if probe_direction is None:
        return None
    vector = getattr(probe_direction, "direction", probe_direction)
    if not isinstance(vector, Tensor) or vector.ndim != 1 or vector.shape[0] != d_model:
        shape = tuple(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
        raise ValueError(
            f"probe_direction must be a [{d_model}] (d_model) vector, got {shape}: a probe of "
            "another model or site?"
        )
    vector = vector.detach().double()
    if vector.norm() == 0:
        raise ValueError("probe_direction is the zero vector")
    return vector / vector.norm()


@dataclass(frozen=True)
class _Comparison:
    """The two checkpoints' weights and the settings every matrix comparison shares."""

    base: Mapping[str, Tensor]
    variant: Mapping[str, Tensor]
    probe: Tensor | None
    top_k: int
    dtype: torch.dtype

    def matrix(self, name: str, layer: int | None, matrix: str, side: str) -> MatrixDiff:
        return _matrix_diff(
            name, layer, matrix, self.base[name], self.variant[name], side,
            self.probe, self.top_k, self.dtype,
        )  # fmt: skip

    def cells(self, found: dict[tuple[int, str], str], layers: list[int]) -> list[MatrixDiff]:
        """Every (layer, matrix) change, layer-major; the d_model side is the output side of
        the matrices that write into the residual stream, the input side of the others."""
        return [
            self.matrix(found[(ly, m)], ly, m, "output" if m in WRITES_RESIDUAL else "input")
            for ly in layers
            for m in MATRICES
        ]

    def extra(self, d_model: int) -> list[MatrixDiff]:
        """The embeddings and an untied ``lm_head``, when present and changed."""
        out = []
        for name, label in EXTRA.items():
            tensor = self.base.get(name)
            if tensor is None or tensor.ndim != 2 or tensor.shape[1] != d_model:
                continue
            if not torch.equal(tensor, self.variant[name].to(tensor.device, tensor.dtype)):
                out.append(self.matrix(name, None, label, "input"))
        return out

    def other(self, skip: set[str]) -> list[ParamDiff]:
        """Norms of the change of every other floating-point tensor that changed (norm
        weights, biases), skipping the tensors in ``skip``."""
        out = []
        for name, tensor in self.base.items():
            if name in skip or not tensor.is_floating_point():
                continue
            w = tensor.detach().to(self.dtype)
            dw = self.variant[name].detach().to(w.device, self.dtype) - w
            norm, base_norm = float(dw.norm()), float(w.norm())
            if norm > 0:
                rel = norm / base_norm if base_norm > 0 else math.inf
                out.append(ParamDiff(name, tuple(tensor.shape), norm, base_norm, rel))
        return out


def weight_diff(
    base: Any,
    variant: Any,
    probe_direction: Float[Tensor, " d_model"] | Any | None = None,
    top_k: int = 8,
    *,
    dtype: torch.dtype = torch.float32,
    base_name: str = "",
    variant_name: str = "",
    cpu_threads: int | None = 1,
) -> WeightDiff:
    """Compare ``variant`` with ``base`` matrix by matrix (see the module docstring).

    ``base`` and ``variant``: ``torch.nn.Module`` (e.g. ``AutoModelForCausalLM``), state dicts
    or ``LoadedModel``; both must have the same parameter names and shapes, else
    :class:`WeightDiffError` names the first parameter that differs. ``probe_direction``: a
    ``d_model`` vector in the raw residual space, or a fitted probe (its ``direction``; for the
    logistic probe that is ``weight / std``, the standardisation undone). Differences and
    norms are computed in float64; ``dtype`` is the precision of the SVDs (float32 by default:
    on a CPU, float64 SVDs of SmolLM2's matrices take about twice as long and change nothing
    visible in the report). ``cpu_threads``: torch threads while the SVDs run on a CPU (1 by
    default, restored afterwards; ``None`` leaves torch's setting): MKL's threaded SVD slows
    down 10-70x when the cores are busy with other work, a single thread does not.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    base_weights, variant_weights = named_weights(base), named_weights(variant)
    _check_comparable(base_weights, variant_weights)
    if not base_name and hasattr(base, "name"):
        base_name = str(base.name)
    if not variant_name and hasattr(variant, "name"):
        variant_name = str(variant.name)
    found, layers, d_model = _layer_matrices(base_weights)
    probe = _unit_probe(probe_direction, d_model)
    compare = _Comparison(base_weights, variant_weights, probe, top_k, dtype)
    on_cpu = next(iter(base_weights.values())).device.type == "cpu"
    with torch.no_grad(), _torch_threads(cpu_threads if on_cpu else None):
        cells = compare.cells(found, layers)
        extra = compare.extra(d_model)
        other = compare.other(set(found.values()) | set(EXTRA))

    k = min(top_k, d_model)
    baseline = random_max_cos(d_model, k) if probe is not None else (None, None)
    return WeightDiff(
        layers=layers,
        matrices=list(MATRICES),
        cells=cells,
        extra=extra,
        other=other,
        top_k=top_k,
        d_model=d_model,
        random_max_cos=baseline[0],
        random_max_cos_p95=baseline[1],
        base=base_name,
        variant=variant_name,
    )
