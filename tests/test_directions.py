"""probes.directions against hand-computed values: unit, project_out on vectors and rows,
mean_difference, seeded random directions."""

from __future__ import annotations

import pytest
import torch

from probes import MeanDiffProbe
from probes.directions import (
    DirectionError,
    mean_difference,
    project_out,
    random_directions,
    unit,
)


def test_unit_scales_to_norm_one_and_refuses_zero_or_nan():
    torch.testing.assert_close(unit(torch.tensor([3.0, 4.0])), torch.tensor([0.6, 0.8]))
    for bad in (torch.zeros(3), torch.tensor([1.0, float("nan")])):
        with pytest.raises(DirectionError, match="non-zero"):
            unit(bad)


def test_project_out_removes_the_component_and_keeps_the_rest():
    gen = torch.Generator().manual_seed(0)
    v, t = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    after = project_out(v, t)
    assert abs(float(after @ t)) < 1e-4
    torch.testing.assert_close(v - after, (v @ t) / (t @ t) * t, atol=1e-5, rtol=1e-5)
    rows = torch.randn(5, 7, 32, generator=gen)  # any leading axes
    out = project_out(rows, t)
    assert out.shape == rows.shape and float((out @ t).abs().max()) < 1e-4
    torch.testing.assert_close(out[2, 3], project_out(rows[2, 3], t))
    assert project_out(rows.half(), t).dtype == torch.float16
    with pytest.raises(DirectionError):
        project_out(v, torch.zeros(32))


def test_mean_difference_is_the_mean_diff_probe_direction():
    a = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    torch.testing.assert_close(mean_difference(a, b), torch.tensor([2.0, -1.0]))
    probe = MeanDiffProbe().fit(torch.cat([a, b]), torch.tensor([1, 1, 0, 0]))
    torch.testing.assert_close(probe.direction, unit(mean_difference(a, b)))
    with pytest.raises(DirectionError, match="both sides"):
        mean_difference(a, b[:0])


def test_random_directions_are_seeded_gaussian_columns():
    d = random_directions(16, 3, seed=5)
    assert d.shape == (16, 3)
    torch.testing.assert_close(d, torch.randn(16, 3, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(d, random_directions(16, 3, seed=6))
