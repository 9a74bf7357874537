"""SAE training, saving/loading, feature ranking and interventions on the tiny random model."""

from __future__ import annotations

import dataclasses
import json
import math
import runpy
from pathlib import Path

import pytest
import torch

from interp.config import ConfigError
from interp.data.transcripts import write_transcripts
from interp.hooks import hook_name
from interp.sae import SAEConfig, SAEMismatchError, load_sae, train_sae
from interp.sae.analysis import analyse_features, write_feature_dashboard
from interp.sae.compare import compare_models
from interp.sae.edits import feature_edit_hook
from interp.sae.experiment import SAEFeaturesConfig
from interp.sae.features import TranscriptFeatures, compare_probes, rank_features
from interp.sae.intervene import answer_prompts, intervene, probe_score_change
from interp.sae.quality import reconstruction_stats
from interp.sae.train import make_training_sae
from probes import LogisticProbe

HOOK = hook_name(0)  # layer 0 of 2: caching stops before the unembedding


@pytest.fixture(scope="module")
def trained(tiny_model, small_dataset, tmp_path_factory):
    """One small SAE on the tiny model, trained once for the module."""
    root = tmp_path_factory.mktemp("sae-cache")
    data = root / "small.jsonl"
    write_transcripts(data, small_dataset)
    config = SAEConfig(
        model="tiny-random",
        layer=0,
        d_sae=96,
        k=8,
        training_tokens=6144,
        lr=1e-2,
        batch_size=128,
        buffer_tokens=1024,
        datasets=(str(data),),
        eval_transcripts=2,
        name="tiny",
        cache_dir=str(root),
        progress=False,
    )
    return config, train_sae(config, tiny_model)


def test_training_lowers_reconstruction_loss(trained, tiny_model):
    config, loaded = trained
    q = loaded.manifest.quality
    assert q["heldout"]["l0"] <= config.k + 1e-6
    assert 0 <= q["heldout"]["dead_fraction"] <= 1
    assert math.isfinite(q["loss"]["loss_increase"]) and q["loss"]["n_tokens"] > 0
    # the same held-out tokens through an untrained SAE of the same shape
    from interp.cache import load_activation_set
    from interp.sae.data import checked_shards, shard_tokens

    acts = load_activation_set(loaded.manifest.activation_cache)
    heldout_rows = {i for i, t in enumerate(acts.ids) if t.startswith(tuple(_test_groups(loaded)))}
    tokens = torch.cat([shard_tokens(s, HOOK, heldout_rows) for s in checked_shards(acts)])
    fresh = make_training_sae(config, tiny_model.d_model, 96, "cpu")
    before = reconstruction_stats(fresh, [tokens])
    after = reconstruction_stats(loaded.sae, [tokens])
    assert after.n_tokens == q["heldout"]["n_tokens"]
    assert after.mse < 0.8 * before.mse
    assert after.explained_variance > before.explained_variance
    assert after.explained_variance == pytest.approx(q["heldout"]["explained_variance"], abs=1e-4)


def _test_groups(loaded):
    from interp.data.datasets import load_dataset
    from interp.data.split import split_transcripts

    data = load_dataset(loaded.manifest.datasets[0])
    _, test = split_transcripts(data, 0.25, 0)
    return {data[i].group + "-" for i in test.tolist()}


def test_saved_sae_loads_with_sae_lens_and_load_sae(trained, tiny_model, monkeypatch):
    from sae_lens import SAE, TopKSAE

    config, loaded = trained
    files = {p.name for p in loaded.path.iterdir()}
    assert {"cfg.json", "sae_weights.safetensors", "manifest.json"} <= files
    plain = SAE.load_from_disk(loaded.path)
    assert isinstance(plain, TopKSAE)
    assert plain.cfg.d_sae == 96 and plain.cfg.d_in == tiny_model.d_model
    assert plain.cfg.metadata.hook_name == HOOK
    manifest = json.loads((loaded.path / "manifest.json").read_text())
    assert manifest["model_fingerprint"] == tiny_model.fingerprint
    assert manifest["hook"] == HOOK and manifest["data_hash"]
    assert manifest["config"]["k"] == 8
    x = torch.randn(5, tiny_model.d_model)
    monkeypatch.setenv("INTERP_CACHE", config.cache_dir)
    by_name = load_sae("tiny", tiny_model, hook=HOOK)
    torch.testing.assert_close(by_name.sae.encode(x), plain.encode(x))
    # reuse: the same config returns the saved SAE without training again
    again = train_sae(config, tiny_model)
    assert again.manifest.train_seconds == loaded.manifest.train_seconds


def test_sae_for_another_model_or_hook_is_refused(trained, tiny_model):
    _, loaded = trained
    other = dataclasses.replace(tiny_model, name="other-model", fingerprint="0123abcd")
    with pytest.raises(SAEMismatchError, match=r"tiny-random.*other-model") as err:
        load_sae(loaded.path, other)
    assert tiny_model.fingerprint in str(err.value) and "0123abcd" in str(err.value)
    with pytest.raises(SAEMismatchError, match=r"blocks\.0\.hook_resid_post.*blocks\.1"):
        load_sae(loaded.path, tiny_model, hook=hook_name(1))
    # a base model's SAE on a fine-tuned variant: allowed only when asked for
    assert load_sae(loaded.path, other, allow_other_model=True).hook == HOOK
    with pytest.raises(FileNotFoundError, match="no SAE 'nope'"):
        load_sae("nope", tiny_model)


def test_feature_auroc_finds_a_planted_feature():
    gen = torch.Generator().manual_seed(0)
    n, d_sae = 80, 30
    y = torch.arange(n) % 2
    X = torch.rand(n, d_sae, generator=gen) * (torch.rand(n, d_sae, generator=gen) > 0.7)
    X[:, 7] = y * (1 + torch.rand(n, generator=gen))  # fires on divergent rows only
    X[:, 3] = (1 - y) * 2.0  # fires on consistent rows only
    groups = [f"g{i // 8}" for i in range(n)]
    train, test = list(range(0, 56)), list(range(56, n))
    ranking = rank_features(X, y, train, test, top=5)
    assert {s.feature for s in ranking.top[:2]} == {3, 7}
    by = {s.feature: s for s in ranking.top}
    assert by[7].direction == 1 and by[7].test_auroc == 1.0
    assert by[3].direction == -1 and by[3].test_auroc_oriented == 1.0
    feats = TranscriptFeatures(X, X, torch.zeros_like(X, dtype=torch.long), torch.randn(n, 4))
    [cmp] = compare_probes(feats, y, train, test, groups, ranking, ks=(2,))
    assert cmp.sparse_test_auroc == 1.0 and cmp.dense_test_auroc < 0.9


def _planted_sae(d_in: int, feature_dir: torch.Tensor):
    """A TopK SAE (k=1, 4 features) whose feature 2 reads and writes ``feature_dir``."""
    from sae_lens import TopKSAE
    from sae_lens.saes.topk_sae import TopKSAEConfig

    q, _ = torch.linalg.qr(torch.cat([feature_dir[:, None], torch.randn(d_in, 3)], 1))
    dirs = q.T[[1, 2, 0, 3]]  # row 2 = +-feature_dir
    dirs[2] = feature_dir / feature_dir.norm()
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=4, k=1, apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.copy_(dirs.T)
        sae.W_dec.copy_(dirs)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_scale_one_changes_nothing_and_ablation_removes_the_feature(tiny_model, small_dataset):
    bridge = tiny_model.bridge
    ids = tiny_model.tokenizer("Answer: I will not mislead the customer.", return_tensors="pt")
    ids = ids["input_ids"]
    captured: dict[str, torch.Tensor] = {}

    def capture(name):
        def fn(act, hook=None):
            captured[name] = act.detach().clone()
            return act

        return fn

    with torch.inference_mode():
        clean = bridge.run_with_hooks(ids, fwd_hooks=[(HOOK, capture("clean"))])
    # plant a feature along the residual's largest direction at the last token
    x = captured["clean"][0]
    sae = _planted_sae(tiny_model.d_model, x[-1] / x[-1].norm())
    before = sae.encode(x)[:, 2]
    assert before[-1] > 0
    with torch.inference_mode():
        same = bridge.run_with_hooks(ids, fwd_hooks=[(HOOK, feature_edit_hook(sae, 2, 1.0))])
        ablated = bridge.run_with_hooks(
            ids, fwd_hooks=[(HOOK, feature_edit_hook(sae, 2, 0.0)), (HOOK, capture("edited"))]
        )
    assert torch.equal(same, clean)
    edited = captured["edited"][0]
    after = sae.encode(edited)[:, 2]
    assert torch.all(after == 0)
    # exactly the feature's contribution is removed: edited = x - a * W_dec[2]
    torch.testing.assert_close(edited, x - before[:, None] * sae.W_dec[2], atol=1e-5, rtol=0)
    assert not torch.allclose(ablated, clean)
    assert not bridge.hook_dict[HOOK]._forward_hooks  # no hook left behind

    prompts = answer_prompts(tiny_model.tokenizer, small_dataset[:16])
    assert prompts and all(p.comply != p.refuse for p in prompts)
    result = intervene(tiny_model, sae, HOOK, 2, 1.0, prompts[:2])
    assert result.change == 0.0 and result.n_prompts == 2
    probe = LogisticProbe(c=1.0).fit(torch.randn(20, tiny_model.d_model), torch.arange(20) % 2)
    assert probe_score_change(probe, sae, [x], 2, 1.0) == 0.0
    assert probe_score_change(probe, sae, [x], 2, 0.0) != 0.0


def test_analysis_dashboard_and_model_comparison(trained, tiny_model, tmp_path):
    _, loaded = trained
    analysis = analyse_features(tiny_model, loaded, top=5, ks=(1, 5))
    assert len(analysis.ranking.top) == 5 and analysis.test
    assert {analysis.transcripts[i].group for i in analysis.test}.isdisjoint(
        {analysis.transcripts[i].group for i in analysis.train}
    )
    assert [p.k for p in analysis.ranking.probes] == [1, 5]
    json.dumps(analysis.to_dict())
    index = write_feature_dashboard(analysis, loaded, tiny_model, tmp_path / "dash", n=2)
    page = tmp_path / "dash" / f"feature-{analysis.ranking.top[0].feature}.html"
    assert page.is_file() and page.name in index.read_text()
    other = dataclasses.replace(tiny_model, name="tiny-copy", fingerprint="copy")
    result = compare_models(
        loaded, [tiny_model, other], analysis.transcripts[:6], top=3, cache_dir=tmp_path
    )
    assert [s.change for s in result.top["tiny-copy"]] == [0.0, 0.0, 0.0]


def test_experiment_end_to_end(trained, tiny_model, tmp_path, capsys):
    from interp.models import build_tiny_random

    config, loaded = trained
    variant, tokenizer = build_tiny_random()
    with torch.no_grad():
        variant.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    variant.save_pretrained(tmp_path / "variant")
    tokenizer.save_pretrained(tmp_path / "variant")
    path = Path(__file__).parents[1] / "experiments" / "sae_features.py"
    main = runpy.run_path(str(path))["main"]
    argv = [
        *("--model", "tiny-random", "--layer", "0", "--d-sae", "96", "--k", "8"),
        *("--training-tokens", "6144", "--lr", "0.01", "--batch-size", "128"),
        *("--buffer-tokens", "1024", "--datasets", config.datasets[0], "--eval-transcripts"),
        *("2", "--name", "tiny", "--cache-dir", config.cache_dir, "--no-progress"),
        *("--top", "5", "--dashboard-features", "2", "--intervene-features", "1"),
        *("--intervene-prompts", "2", "--compare-transcripts", "3", "--device", "cpu"),
        *("--models", str(tmp_path / "variant"), "--out", str(tmp_path / "out")),
    ]
    assert main(argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    # The flags are the API's config: what the run saved is the same SAEFeaturesConfig.
    api = SAEFeaturesConfig(
        **{**config.to_dict(), "device": "cpu"},
        top=5,
        dashboard_features=2,
        intervene_features=1,
        intervene_prompts=2,
        compare_transcripts=3,
        models=(str(tmp_path / "variant"),),
        out=str(tmp_path / "out"),
    )
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved == json.loads(json.dumps(api.to_dict()))
    assert api.sae_config() == dataclasses.replace(config, device="cpu")
    assert results["sae"]["manifest"]["train_seconds"] == loaded.manifest.train_seconds
    assert len(results["features"]["top"]) == 5
    [ablate, amplify] = results["interventions"]
    assert ablate["scale"] == 0.0 and amplify["scale"] == 4.0 and ablate["n_prompts"] == 2
    [(name, shifts)] = results["compare_models"]["top"].items()
    assert name.endswith("variant") and abs(shifts[0]["change"]) > 0
    for figure in ("feature_auroc.html", "probe_comparison.html", "interventions.html"):
        assert (tmp_path / "out" / figure).is_file()
    assert (tmp_path / "out" / "dashboard" / "index.html").is_file()
    assert "sparse probe on top-1" in capsys.readouterr().out
    # the same name with other settings is refused, not silently reused
    with pytest.raises(SAEMismatchError, match="other settings"):
        train_sae(dataclasses.replace(config, k=4), tiny_model)


def test_config_is_validated():
    with pytest.raises(ConfigError, match="architecture"):
        SAEConfig(architecture="dense")
    with pytest.raises(ConfigError, match="k"):
        SAEConfig(d_sae=8, k=16)
    assert SAEConfig(datasets="builtin:consistency, x.jsonl").datasets == (  # type: ignore[arg-type]
        "builtin:consistency",
        "x.jsonl",
    )
