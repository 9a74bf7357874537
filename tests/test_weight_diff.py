"""weight_diff on the tiny random Llama: planted changes are found where they were put."""

from __future__ import annotations

import copy
import json
import math
import runpy
from pathlib import Path

import pytest
import torch

from interp.finetune.figures import weight_diff_figure
from interp.finetune.weight_diff import (
    MATRICES,
    WeightDiff,
    WeightDiffError,
    effective_rank,
    energy_rank,
    random_max_cos,
    weight_diff,
)
from interp.finetune.weight_diff_report import WeightDiffConfig, run_weight_diff
from interp.models import build_tiny_random
from probes import LogisticProbe

D_MODEL, D_MLP = 64, 128


@pytest.fixture(scope="module")
def base() -> dict[str, torch.Tensor]:
    model, _ = build_tiny_random()
    return {k: v.clone() for k, v in model.state_dict().items()}


def unit(n: int, seed: int) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_identical_copy_has_zero_change(base):
    diff = weight_diff(base, copy.deepcopy(base), probe_direction=unit(D_MODEL, 1))
    assert diff.layers == [0, 1] and diff.matrices == list(MATRICES)
    assert diff.axes == ("layer", "matrix") and len(diff.cells) == 2 * 7
    for cell in diff.cells:
        assert cell.norm == 0 and cell.relative_norm == 0 and cell.effective_rank == 0
        assert cell.rank90 == 0 and cell.probe_max_cos is None
    assert diff.extra == [] and diff.other == []
    assert torch.equal(diff.grid("norm"), torch.zeros(2, 7))
    assert "no weight changed" in diff.table()


def test_planted_rank1_down_proj_is_found(base):
    u, v, a = unit(D_MODEL, 1), unit(D_MLP, 2), 0.5  # dW = a u v^T: ||dW|| = a, one singular value
    variant = copy.deepcopy(base)
    name = "model.layers.1.mlp.down_proj.weight"
    variant[name] = base[name] + a * torch.outer(u, v)
    # small full-rank noise everywhere else, so other cells are changed but without structure
    noise = torch.Generator().manual_seed(3)
    for key in variant:
        if "layers" in key and key != name and variant[key].ndim == 2:
            variant[key] = base[key] + 1e-4 * torch.randn(base[key].shape, generator=noise)

    threads = torch.get_num_threads()
    diff = weight_diff(base, variant, probe_direction=u, top_k=4)
    assert torch.get_num_threads() == threads  # the single-thread SVD setting is undone
    cell = diff.cell(1, "down_proj")
    assert cell.side == "output" and cell.shape == (D_MODEL, D_MLP)
    assert cell.norm == pytest.approx(a, rel=1e-3)
    assert cell.relative_norm == pytest.approx(cell.norm / base[name].norm().item(), rel=1e-6)
    assert cell.top_singular_values[0] == pytest.approx(a, rel=1e-3)
    assert cell.effective_rank < 1.1 and cell.rank90 == 1
    assert diff.largest(1)[0] is cell
    assert diff.largest(1, by="norm")[0] is cell
    # the probe direction equals u: cos 1 with the top output direction, 0 with the others
    # (orthonormal to it); in unstructured cells it is near chance
    assert cell.probe_max_cos == pytest.approx(1.0, abs=1e-4)
    assert cell.probe_cos[0] == pytest.approx(1.0, abs=1e-4)
    assert max(cell.probe_cos[1:]) < 0.05
    others = [c.probe_max_cos for c in diff.cells if c is not cell]
    assert max(others) < 0.75
    mean_random, _ = random_max_cos(D_MODEL, 4)
    assert abs(sum(others) / len(others) - mean_random) < 0.12
    assert diff.random_max_cos == pytest.approx(mean_random)
    # an unrelated probe direction is near chance on the planted cell too
    other = weight_diff(base, variant, probe_direction=unit(D_MODEL, 9), top_k=4)
    assert other.cell(1, "down_proj").probe_max_cos < 0.6
    assert "down_proj" in diff.table(3).splitlines()[2]


def test_input_side_matrices_use_their_input_directions(base):
    u, v = unit(D_MODEL, 4), unit(D_MODEL, 5)
    variant = copy.deepcopy(base)
    name = "model.layers.0.self_attn.q_proj.weight"
    variant[name] = base[name] + 0.3 * torch.outer(v, u)  # reads along u from the residual
    cell = weight_diff(base, variant, probe_direction=u).cell(0, "q_proj")
    assert cell.side == "input"
    assert cell.probe_max_cos == pytest.approx(1.0, abs=1e-4)
    cell_v = weight_diff(base, variant, probe_direction=v).cell(0, "q_proj")
    assert cell_v.probe_max_cos < 0.6  # v is on the output (head) side, not read from


def test_embeddings_and_norms_reported_separately(base):
    variant = copy.deepcopy(base)
    variant["model.embed_tokens.weight"] = base["model.embed_tokens.weight"].clone()
    variant["model.embed_tokens.weight"][7] += unit(D_MODEL, 8)
    variant["lm_head.weight"] = variant["model.embed_tokens.weight"]  # tied, as in the model
    variant["model.norm.weight"] = base["model.norm.weight"] + 0.5
    diff = weight_diff(base, variant)
    assert [c.matrix for c in diff.extra] == ["embed_tokens"]
    assert diff.extra[0].norm == pytest.approx(1.0, rel=1e-5)
    assert diff.extra[0].effective_rank == pytest.approx(1.0, abs=1e-3)
    assert [p.name for p in diff.other] == ["model.norm.weight"]
    assert diff.other[0].norm == pytest.approx(0.5 * math.sqrt(D_MODEL), rel=1e-6)
    assert all(c.norm == 0 for c in diff.cells)


def test_shape_mismatch_names_the_parameter(base):
    variant = copy.deepcopy(base)
    variant["model.layers.1.mlp.up_proj.weight"] = torch.zeros(96, D_MODEL)
    with pytest.raises(WeightDiffError, match=r"layers\.1\.mlp\.up_proj.*\(128, 64\).*\(96, 64\)"):
        weight_diff(base, variant)
    del variant["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(WeightDiffError, match=r"up_proj.*not in the variant"):
        weight_diff(base, variant)
    with pytest.raises(ValueError, match=r"\[64\]"):
        weight_diff(base, base, probe_direction=torch.ones(10))


def test_modules_and_loaded_models_are_accepted(base, tiny_model):
    model, _ = build_tiny_random()
    assert weight_diff(model, base).largest() == []
    diff = weight_diff(tiny_model, tiny_model)  # the bridge's aliases are dropped
    assert diff.layers == [0, 1] and diff.base == "tiny-random"


def test_json_round_trip_and_figure(base):
    variant = copy.deepcopy(base)
    name = "model.layers.0.mlp.up_proj.weight"
    variant[name] = base[name] + 0.1 * torch.outer(unit(D_MLP, 6), unit(D_MODEL, 7))
    diff = weight_diff(base, variant, probe_direction=unit(D_MODEL, 7), base_name="b")
    back = WeightDiff.from_dict(json.loads(json.dumps(diff.to_dict())))
    assert back == diff
    assert back.to_dict()["axes"] == ["layer", "matrix"]
    fig = weight_diff_figure(diff)
    assert len(fig.data) == 3 and fig.data[0].type == "heatmap"
    assert len(weight_diff_figure(weight_diff(base, variant)).data) == 2


def test_rank_definitions_by_hand():
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 0.0])) == pytest.approx(3.0)
    assert effective_rank(torch.tensor([2.0, 0.0])) == pytest.approx(1.0)
    # energies (4, 1, 1): p = (2/3, 1/6, 1/6), exp(H) = (3/2)^(2/3) * 6^(1/3) = 13.5^(1/3)
    assert effective_rank(torch.tensor([2.0, 1.0, 1.0])) == pytest.approx(13.5 ** (1 / 3))
    assert effective_rank(torch.zeros(3)) == 0.0
    assert energy_rank(torch.tensor([3.0, 1.0, 1.0])) == 2  # 9/11 < 0.9 <= 10/11
    assert energy_rank(torch.tensor([3.0, 1.0])) == 1  # 9/10 reaches 0.9
    # one direction: E|x_1| for x uniform on the sphere = G(d/2) / (sqrt(pi) G((d+1)/2))
    d = 64
    exact = math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)
    assert random_max_cos(d, 1)[0] == pytest.approx(exact, rel=0.02)


def test_logistic_probe_direction_is_in_raw_space():
    """Probe.direction undoes the standardisation (weight / std): it is the gradient of the
    score in raw activation space, which is what weight_diff compares singular vectors with."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 8, generator=gen) * torch.tensor([1, 10, 0.1, 1, 1, 5, 1, 1.0])
    y = (X[:, 1] / 10 + X[:, 2] * 10 > 0).long()
    probe = LogisticProbe(c=1.0).fit(X, y)
    x = X[:1].clone().requires_grad_(True)
    probe.score(x).sum().backward()
    gradient = x.grad[0] / x.grad[0].norm()
    assert torch.allclose(probe.direction, gradient, atol=1e-5)


def test_experiment_script_on_a_tiny_variant(tmp_path, capsys):
    model, tokenizer = build_tiny_random()
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight += 0.5 * torch.outer(
            unit(D_MODEL, 1), unit(D_MLP, 2)
        )
    model.save_pretrained(tmp_path / "variant")
    tokenizer.save_pretrained(tmp_path / "variant")
    probe_dir = tmp_path / "probe"
    X = torch.randn(40, D_MODEL, generator=torch.Generator().manual_seed(0))
    LogisticProbe().fit(X, (X[:, 0] > 0).long()).save(probe_dir)

    config = WeightDiffConfig(
        variant=(str(tmp_path / "variant"),),
        base="tiny-random",
        probe=str(probe_dir / "probe.json"),
        out=str(tmp_path / "out"),
    )
    totals = run_weight_diff(config)
    assert max(totals[config.variant[0]], key=totals[config.variant[0]].get) == "down_proj"
    folder = tmp_path / "out" / "variant"
    saved = WeightDiff.from_dict(json.loads((folder / "weight_diff.json").read_text()))
    assert saved.largest(1)[0].layer == 1 and saved.largest(1)[0].matrix == "down_proj"
    assert saved.cell(1, "down_proj").norm == pytest.approx(0.5, rel=1e-3)
    assert (folder / "weight_diff.html").is_file()
    assert "down_proj" in capsys.readouterr().out
    main = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "weight_diff.py"))["main"]
    argv = ["--base", "tiny-random", "--variant", str(tmp_path / "variant")]
    assert main([*argv, "--probe", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "error: no saved probe at" in capsys.readouterr().err
    assert main([*argv, "--variant", str(tmp_path / "nothing")]) == 2
    assert "nothing: " in capsys.readouterr().err  # the error names the variant
