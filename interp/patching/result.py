"""The result of a patching sweep: metric values with their axis names, saved and plotted."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from interp.artifacts import (
    check_seal,
    read_json,
    seal,
    warn_unchecked,
    write_figure,
    write_json_atomic,
)

AXES = ("site", "layer", "column")


@dataclass
class PatchResult:
    """``values[site, layer, column]``: the metric after each patch.

    ``target_value`` and ``source_value`` are the metric on the clean target and clean
    source runs; :attr:`normalised` rescales so that 0 = target unchanged, 1 = source
    behaviour.
    """

    values: Float[Tensor, "site layer column"]
    sites: tuple[str, ...]
    layers: tuple[int, ...]
    columns: tuple[str, ...]
    metric: str
    target_value: float
    source_value: float
    meta: dict[str, Any] = field(default_factory=dict)
    axes: tuple[str, ...] = AXES

    @property
    def normalised(self) -> Float[Tensor, "site layer column"]:
        """``(value - target) / (source - target)``; NaN (with a warning) when the clean
        source and target give the same metric, since there is then nothing to recover."""
        gap = self.source_value - self.target_value
        if abs(gap) < 1e-6:
            warnings.warn(
                f"clean source and target give the same {self.metric} ({self.target_value:.4g})"
                "; normalised values are undefined",
                stacklevel=2,
            )
            return torch.full_like(self.values, float("nan"))
        return (self.values - self.target_value) / gap

    def site(self, name: str) -> Float[Tensor, "layer column"]:
        if name not in self.sites:
            raise KeyError(f"no site {name!r} in this result; it has {', '.join(self.sites)}")
        return self.values[self.sites.index(name)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "axes": list(self.axes),
            "sites": list(self.sites),
            "layers": list(self.layers),
            "columns": list(self.columns),
            "metric": self.metric,
            "target_value": self.target_value,
            "source_value": self.source_value,
            "values": self.values.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchResult:
        return cls(
            values=torch.tensor(data["values"], dtype=torch.float32),
            sites=tuple(data["sites"]),
            layers=tuple(data["layers"]),
            columns=tuple(data["columns"]),
            metric=data["metric"],
            target_value=data["target_value"],
            source_value=data["source_value"],
            meta=data.get("meta", {}),
            axes=tuple(data.get("axes", AXES)),
        )

    def save(self, folder: str | Path, name: str = "patching") -> Path:
        """Write ``<name>.json`` (sealed with the checksum of its contents) and
        ``<name>.html`` (the heatmap) into ``folder``."""
        folder = Path(folder)
        write_json_atomic(folder / f"{name}.json", seal(self.to_dict()))
        write_figure(self.heatmap(), folder / f"{name}.html")
        return folder / f"{name}.json"

    @classmethod
    def load(cls, path: str | Path) -> PatchResult:
        """A result saved by :meth:`save`; a file that is not valid JSON, or whose contents
        no longer match its checksum, raises :class:`ValueError` naming it (a file saved
        before results carried a checksum loads with a warning)."""
        fix = "run the patching sweep again to rewrite it"
        data = read_json(path, fix=fix)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a saved patching result (a JSON object); {fix}")
        if not check_seal(data, where=path, fix=fix):
            warn_unchecked(path, f"{fix} to record it")
        return cls.from_dict({k: v for k, v in data.items() if k != "blake2b"})

    def heatmap(self, normalised: bool = True, title: str | None = None) -> go.Figure:
        """One heatmap per site: layer (rows) x column (patched positions or segments)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = self.normalised if normalised else self.values
        if normalised and torch.isnan(data).all():
            data, normalised = self.values, False
        fig = make_subplots(
            rows=len(self.sites), cols=1, subplot_titles=list(self.sites), shared_xaxes=True
        )
        for i in range(len(self.sites)):
            fig.add_trace(
                go.Heatmap(
                    z=data[i].tolist(),
                    x=[f"{j}|{c}" for j, c in enumerate(self.columns)],
                    y=list(self.layers),
                    coloraxis="coloraxis",
                ),
                row=i + 1,
                col=1,
            )
            fig.update_yaxes(title_text="layer", row=i + 1, col=1)
        scale = "normalised (0 = target, 1 = source)" if normalised else self.metric
        fig.update_layout(
            title=title
            or f"Activation patching: {self.meta.get('source_model', '?')} -> "
            f"{self.meta.get('target_model', '?')}, {scale}",
            coloraxis={"colorscale": "RdBu", "cmid": 0},
            height=260 * len(self.sites) + 120,
            template="plotly_white",
        )
        return fig

    def table(self, top: int = 10) -> str:
        """The ``top`` patches with the largest normalised effect, as text."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            norm = self.normalised
        flat = norm.nan_to_num(0).abs().flatten()
        order = flat.argsort(descending=True)[:top]
        lines = [
            f"{self.metric}: clean target {self.target_value:.4f}, clean source "
            f"{self.source_value:.4f}",
            f"{'site':10s} {'layer':>5s} {'normalised':>10s} {'value':>9s}  column",
        ]
        n_l, n_c = len(self.layers), len(self.columns)
        for k in order.tolist():
            s, rest = divmod(k, n_l * n_c)
            layer, col = divmod(rest, n_c)
            lines.append(
                f"{self.sites[s]:10s} {self.layers[layer]:5d} {float(norm[s, layer, col]):10.3f} "
                f"{float(self.values[s, layer, col]):9.4f}  {self.columns[col]}"
            )
        return "\n".join(lines)
