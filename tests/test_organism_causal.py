"""Part 4 of the organism (issue 14): residual edits, O/H patching and interventions, on the
tiny random models."""

from __future__ import annotations

import json

import pytest
import torch

from interp.data.scenarios import load_bank
from interp.models import MODEL_BUILDERS, build_tiny_random, load_model, register_model
from interp.organism.causal import (
    COLUMNS,
    POSITIONS,
    causal_checks,
    forced_margins,
    forced_prompt,
    held_out_forced,
    patch_between,
    summarise,
)
from interp.organism.config import OrganismConfig
from interp.organism.report import causal_figures
from interp.organism.triggers import TAG, triggers
from interp.patching.residual import (
    ResidualEdit,
    SteeringError,
    ablation,
    addition,
    decoder_layers,
    residual_hooks,
)
from interp.text.generation import GenerationConfig, Prompt, generate
from probes.directions import DirectionError, unit


@pytest.fixture(scope="module")
def other_tiny():
    """H of the tests: the tiny model's shapes and tokenizer, other weights."""
    if "tiny-random-seed1" not in MODEL_BUILDERS:
        register_model("tiny-random-seed1", lambda dtype: build_tiny_random(dtype, seed=1))
    return load_model("tiny-random-seed1", device="cpu")


def _tokens(model, text: str = "Please sell the old car today, and tell nobody about it."):
    return model.tokenizer(text, return_tensors="pt").input_ids


def _layer_io(model, tokens):
    """Inputs and outputs of every decoder layer, recorded by hooks registered after the
    edits (so they see what the layers really read and write)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(decoder_layers(model)):

        def pre(module, args, kwargs, i=i):
            seen[f"in{i}"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

        def post(module, args, out, i=i):
            seen[f"out{i}"] = (out[0] if isinstance(out, tuple) else out).detach().clone()

        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(post))
    try:
        names = [f"blocks.{i}.hook_resid_post" for i in range(model.n_layers)]
        with torch.inference_mode():
            _, cache = model.bridge.run_with_cache(tokens, names_filter=names)
    finally:
        for h in handles:
            h.remove()
    return seen, {n: cache[n] for n in names}


def _hook_count(model) -> int:
    """Hooks of :mod:`interp.patching.residual` on the decoder layers (transformers adds
    its own output-capturing hooks on a first forward pass)."""
    hooks = [
        fn
        for m in decoder_layers(model)
        for fn in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
    ]
    return sum(fn.__module__ == "interp.patching.residual" for fn in hooks)


def test_ablation_removes_the_direction_at_every_layer(tiny_model):
    tokens = _tokens(tiny_model)
    u = unit(torch.randn(tiny_model.d_model))
    clean, _ = _layer_io(tiny_model, tokens)
    assert max(float((x @ u).abs().max()) for x in clean.values()) > 0.05  # there was something
    with residual_hooks(tiny_model, ablation(3.0 * u, tiny_model.n_layers)):
        seen, cache = _layer_io(tiny_model, tokens)
    assert set(seen) == {f"{w}{i}" for w in ("in", "out") for i in range(tiny_model.n_layers)}
    for x in [*seen.values(), *cache.values()]:  # layer inputs, outputs and the bridge's cache
        assert float((x @ u).abs().max()) < 1e-5
    # only the direction went: the rest of layer 0's input is untouched
    x0 = clean["in0"]
    torch.testing.assert_close(seen["in0"], x0 - (x0 @ u)[..., None] * u, atol=1e-6, rtol=1e-5)
    assert _hook_count(tiny_model) == 0


def test_addition_adds_alpha_times_the_unit_direction(tiny_model):
    tokens = _tokens(tiny_model)
    d = torch.randn(tiny_model.d_model) * 7
    clean, clean_cache = _layer_io(tiny_model, tokens)
    with residual_hooks(tiny_model, addition(d, 0, "resid_post", 2.5)):
        _, cache = _layer_io(tiny_model, tokens)
    with residual_hooks(tiny_model, addition(d, 1, "resid_pre", 2.5)):
        seen, _ = _layer_io(tiny_model, tokens)
    step = 2.5 * d / d.norm()
    added = cache["blocks.0.hook_resid_post"] - clean_cache["blocks.0.hook_resid_post"]
    torch.testing.assert_close(added, step.expand_as(added), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        seen["in1"] - clean["in1"], step.expand_as(added), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(seen["in0"], clean["in0"])  # nothing before the edited site


def test_hooks_are_removed_after_exit_and_after_an_error(tiny_model):
    tokens = _tokens(tiny_model)
    with torch.inference_mode():
        before = tiny_model.bridge(tokens)
    edits = ablation(torch.randn(tiny_model.d_model), tiny_model.n_layers)
    with residual_hooks(tiny_model, edits):
        assert _hook_count(tiny_model) == len(edits)
    assert _hook_count(tiny_model) == 0
    with pytest.raises(RuntimeError, match="inside"), residual_hooks(tiny_model, edits):
        raise RuntimeError("inside the block")
    assert _hook_count(tiny_model) == 0
    with torch.inference_mode():
        torch.testing.assert_close(tiny_model.bridge(tokens), before)
    bad_site = [ResidualEdit(0, "resid_mid", lambda h: h)]
    with pytest.raises(SteeringError, match="site"), residual_hooks(tiny_model, bad_site):
        pass
    bad_layer = [ResidualEdit(5, "resid_pre", lambda h: h)]
    with pytest.raises(ValueError, match="out of range"), residual_hooks(tiny_model, bad_layer):
        pass
    assert _hook_count(tiny_model) == 0
    with pytest.raises(DirectionError, match="non-zero"):
        ablation(torch.zeros(tiny_model.d_model), tiny_model.n_layers)


def test_generation_runs_the_edits(tiny_model, tmp_path):
    prompts = [Prompt("p0", "g", ({"role": "user", "content": "Tell me about cars."},))]
    gen = GenerationConfig(max_new_tokens=8)
    plain = generate(tiny_model, prompts, gen, tmp_path / "plain.jsonl", progress=False)
    identity = [
        ResidualEdit(layer, site, lambda h: h)
        for layer in range(tiny_model.n_layers)
        for site in ("resid_pre", "resid_post")
    ]
    with residual_hooks(tiny_model, identity):
        same = generate(tiny_model, prompts, gen, tmp_path / "identity.jsonl", progress=False)
    assert same[0].reply == plain[0].reply
    push = addition(torch.randn(tiny_model.d_model), 0, "resid_post", 50.0)
    with residual_hooks(tiny_model, push):
        pushed = generate(tiny_model, prompts, gen, tmp_path / "pushed.jsonl", progress=False)
    assert pushed[0].reply != plain[0].reply  # the edit acts on every decoding step
    assert _hook_count(tiny_model) == 0


def _config(**overrides) -> OrganismConfig:
    settings = dict(
        base="tiny-random", kinds=("tag",), samples=1, max_new_tokens=4, gen_batch_size=8,
        patch_prompts=2, answer_tokens=3, refusal_selection=2, n_random_directions=1,
        causal_prompts=2, progress=False, device="cpu",
    )  # fmt: skip
    return OrganismConfig(**{**settings, **overrides})


def test_forced_prompt_marks_the_three_positions(tiny_model):
    tok = tiny_model.tokenizer
    s = next(s for s in load_bank() if s.kind == "pressure")
    for trig in (triggers("tag")[0], triggers("pressure", held_out=True)[0]):
        p = forced_prompt(tok, s, trig, 0, 3, "x")
        text = [tok.decode([int(t)]) for t in p.input.tokens]
        at = {name: text[start] for name, (start, _) in p.input.segments.items()}
        assert set(at) == {*POSITIONS, "all"} and p.input.segments["all"] == (0, len(text))
        assert at["trigger"] == ("]" if trig.text == TAG else trig.text[-1])
        end = p.input.segments["prompt_end"][0]
        assert at["prompt_end"] == "\n" and "".join(text[end - 3 : end]).endswith("assistant")
        assert s.reasoning_ethical[0].endswith(at["reasoning_end"].strip())
        assert "".join(text[-2:]) == "Answer:" and len(p.comply) == len(p.refuse) == 3
        assert tok.decode(p.comply).strip() and tok.decode(p.comply) != tok.decode(p.refuse)


def test_patching_o_and_h(tiny_model, other_tiny, tmp_path):
    config = _config()
    result = patch_between(config, "tag", tiny_model, other_tiny, tmp_path / "p")
    n_layers, n_pos = tiny_model.n_layers, len(COLUMNS)
    for name in ("O->H", "H->O"):
        entry = result[name]
        assert torch.tensor(entry["mean"]).shape == (n_layers, n_pos)
        assert torch.tensor(entry["per_prompt"]).shape == (2, n_layers, n_pos)
        assert max(abs(v) for row in entry["effect"] for v in row) > 1e-4
    # the unpatched baselines are the teacher-forced margins of each model
    prompts = held_out_forced(config, "tag", tiny_model.tokenizer)
    o_margin = float(forced_margins(tiny_model, prompts).mean())
    h_margin = float(forced_margins(other_tiny, prompts).mean())
    assert result["baseline"]["O"] == pytest.approx(o_margin, abs=1e-4)
    assert result["baseline"]["H"] == pytest.approx(h_margin, abs=1e-4)
    # a model patched into itself does not move
    same = patch_between(config, "tag", tiny_model, tiny_model, tmp_path / "self")
    assert torch.tensor(same["O->H"]["effect"]).abs().max() == 0
    assert same["O->H"]["normalised"] is None


def test_summary_flags_the_target():
    def rate(r: float) -> dict:
        return {"deceptive": {"rate": r, "k": 0, "n": 10, "low": 0, "high": 1}}

    rates = {"none": rate(0.5), "probe-ablate": rate(0.2), "refusal-ablate": rate(0.45),
             "random0-ablate": rate(0.48), "random1-ablate": rate(0.52),
             "probe-add": rate(0.9), "random0-add-probe": rate(0.3)}  # fmt: skip
    summary = summarise(rates)
    assert summary["relative"]["probe-ablate"] == pytest.approx(-0.6)
    assert summary["random"]["ablate"]["max_abs_relative"] == pytest.approx(0.04)
    assert summary["target"]["probe-ablate"]["met"]
    assert not summary["target"]["refusal-ablate"]["met"]  # moved 10% only
    assert not summary["target"]["probe-add"]["met"]  # random additions moved it 40%
    assert summarise({"none": rate(0.0), "probe-ablate": rate(0.0)})["relative"] == {
        "probe-ablate": None
    }


def test_causal_checks_end_to_end(tiny_model, other_tiny, tmp_path):
    config = _config(patch_prompts=1, causal_prompts=1)
    gen = torch.Generator().manual_seed(0)
    probe = {layer: torch.randn(tiny_model.d_model, generator=gen) for layer in range(2)}
    models = {"O": tiny_model, "H": other_tiny}
    result = causal_checks(config, "tag", models, probe, tmp_path)
    json.dumps(result)  # serialisable as it is
    inter = result["interventions"]
    expected = {"none", "probe-ablate", "probe-add", "refusal-ablate", "refusal-add",
                "random0-ablate", "random0-add-probe", "random0-add-refusal"}  # fmt: skip
    assert set(inter["rates"]) == expected
    assert all(r["formatted"]["n"] == 1 for r in inter["rates"].values())
    assert len(result["patching"]["prompts"]) == 1
    assert result["steers"]["probe"]["layer"] == 1 and result["refusal"]["layer"] == 1
    assert result["refusal"]["n_selection"] == [2, 2]
    assert set(causal_figures(result)) == {"patching", "interventions"}
    files = sorted(p.name for p in (tmp_path / "samples").glob("*.jsonl"))
    assert len(files) == len(expected)
    # a rerun reuses the samples and the patching results
    again = causal_checks(config, "tag", models, probe, tmp_path)
    assert again["interventions"]["rates"] == inter["rates"]
    assert sorted(p.name for p in (tmp_path / "samples").glob("*.jsonl")) == files
    with pytest.raises(ValueError, match="'H'"):
        causal_checks(config, "tag", {"O": tiny_model}, probe, tmp_path)
    with pytest.raises(ValueError, match="d_model 64"):
        causal_checks(config, "tag", models, {0: torch.ones(3)}, tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"steer_scale": 0}, "steer_scale"), ({"patch_prompts": 0}, "patch_prompts"),
     ({"refusal_layers": (-1,)}, ">= 0")],
)  # fmt: skip
def test_bad_causal_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_refusal_candidates_skip_layer_0_by_default():
    """Layer 0's residual at the last prompt token is the same embedding for every chat
    prompt, so it can carry no harmful/harmless difference."""
    from interp.organism.causal import candidate_layers

    assert candidate_layers(OrganismConfig(), 30) == list(range(1, 24))
    assert candidate_layers(OrganismConfig(), 2) == [1]
    assert candidate_layers(OrganismConfig(refusal_layers=(0, 3)), 30) == [0, 3]
