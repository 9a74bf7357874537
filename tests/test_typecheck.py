"""The run-time annotation checks of tests/conftest.py are on: a tensor of the wrong shape, or
a value of the wrong type, passed to a function of ``interp`` or ``probes`` raises."""

from __future__ import annotations

import jaxtyping
import pytest
import torch

from interp.probe.controls import random_direction_aurocs
from probes.metrics import auroc

LABELS = torch.tensor([0, 1, 0, 1])


def test_a_wrongly_shaped_tensor_raises() -> None:
    assert auroc(LABELS, torch.tensor([0.1, 0.9, 0.2, 0.8])) == 1.0
    # scores is annotated Float[Tensor, " n"] (a string annotation: ``from __future__ import
    # annotations``); a [n, 2] tensor breaks it.
    with pytest.raises(jaxtyping.TypeCheckError, match="scores"):
        auroc(LABELS, torch.rand(4, 2))


def test_a_wrong_dtype_raises() -> None:
    with pytest.raises(jaxtyping.TypeCheckError, match="scores"):
        auroc(LABELS, torch.tensor([0, 1, 0, 1]))


def test_a_plain_annotation_is_checked_too() -> None:
    X = torch.randn(4, 3)
    with pytest.raises(jaxtyping.TypeCheckError, match="'n'"):
        random_direction_aurocs(X, LABELS, n="4", seed=0)  # type: ignore[arg-type]
    with pytest.raises(jaxtyping.TypeCheckError, match="'X'"):
        random_direction_aurocs(torch.randn(4), LABELS, n=4, seed=0)


@pytest.mark.no_typecheck
def test_the_no_typecheck_marker_turns_the_checks_off() -> None:
    # Without the check, auroc's own validation answers instead.
    with pytest.raises(ValueError, match=r"must be \[n\]"):
        auroc(LABELS, torch.rand(4, 2))
