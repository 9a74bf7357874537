"""interp.patching.aggregate.average_patches against hand-computed values: the pooled ratio
of means and the per-prompt mean of ratios, with prompts whose clean gap is too small left
out of the latter (and counted)."""

from __future__ import annotations

import pytest
import torch

from interp.patching import PatchResult, average_patches


def _result(values: list[float], target: float, source: float, metric: str = "m") -> PatchResult:
    return PatchResult(
        values=torch.tensor(values).reshape(1, 1, -1),
        sites=("resid_pre",),
        layers=(0,),
        columns=tuple(f"c{i}" for i in range(len(values))),
        metric=metric,
        target_value=target,
        source_value=source,
    )


def test_pooled_and_per_prompt_readings_by_hand():
    a = _result([1.0, 2.0], target=0.0, source=2.0)  # normalised 0.5, 1.0
    b = _result([1.0, 5.0], target=1.0, source=9.0)  # normalised 0.0, 0.5
    avg = average_patches([a, b])
    assert avg.n == 2 and avg.n_per_prompt == 2
    assert avg.target_mean == 0.5 and avg.source_mean == 5.5
    torch.testing.assert_close(avg.mean[0, 0], torch.tensor([1.0, 3.5]))
    torch.testing.assert_close(avg.effect[0, 0], torch.tensor([0.5, 3.0]))
    torch.testing.assert_close(avg.pooled[0, 0], torch.tensor([0.1, 0.6]))  # / gap 5.0
    torch.testing.assert_close(avg.per_prompt[0, 0], torch.tensor([0.25, 0.75]))


def test_a_prompt_without_a_gap_leaves_the_per_prompt_mean_and_is_counted():
    a = _result([1.0], target=0.0, source=2.0)
    flat = _result([3.0], target=3.0, source=3.0)
    avg = average_patches([a, flat], min_gap=0.1)
    assert avg.n_per_prompt == 1
    torch.testing.assert_close(avg.per_prompt[0, 0], torch.tensor([0.5]))
    torch.testing.assert_close(avg.pooled[0, 0], torch.tensor([(2.0 - 1.5) / 1.0]))
    none = average_patches([flat, flat], min_gap=0.1)
    assert none.pooled is None and none.per_prompt is None and none.n_per_prompt == 0


def test_unlike_results_and_no_results_are_refused():
    with pytest.raises(ValueError, match="no patching results"):
        average_patches([])
    with pytest.raises(ValueError, match="same settings"):
        average_patches([_result([1.0], 0, 1), _result([1.0], 0, 1, metric="other")])
