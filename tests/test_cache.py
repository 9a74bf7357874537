import pytest
import torch

from interp.cache import CacheMismatchError, cache_activations, load_activation_set
from interp.data.tokens import encode_transcript
from interp.hooks import hook_name

HOOKS = [hook_name(1), hook_name(0, "resid_pre")]


def test_round_trip_and_reuse(tiny_model, small_dataset, tmp_path, monkeypatch, count_passes):
    acts = cache_activations(
        tiny_model, small_dataset, HOOKS, cache_dir=tmp_path, progress=False, shard_size=20
    )
    assert acts[hook_name(1)].shape == (len(small_dataset), tiny_model.d_model)
    assert acts.ids == [t.id for t in small_dataset]
    assert bool(acts.answer_found.all())
    again = load_activation_set(acts.path, expect=acts.key)
    assert torch.equal(again[hook_name(1)], acts[hook_name(1)])

    calls = count_passes(tiny_model)
    reused = cache_activations(
        tiny_model, small_dataset, HOOKS, cache_dir=tmp_path, progress=False, shard_size=20
    )
    assert calls["n"] == 0
    assert torch.equal(reused[hook_name(1)], acts[hook_name(1)])


def test_pooled_equals_mean_of_unpadded_run(tiny_model, small_dataset, tmp_path):
    """Left-padded batches give the same pooled vectors as one transcript at a time."""
    sample = small_dataset[:10]
    batched = cache_activations(
        tiny_model, sample, HOOKS, cache_dir=tmp_path / "a", batch_size=8, progress=False
    )
    for i, t in enumerate(sample):
        enc = encode_transcript(tiny_model.tokenizer, t, "answer", 1024)
        with torch.inference_mode():
            _, raw = tiny_model.bridge.run_with_cache(
                torch.tensor([enc.input_ids]), names_filter=[hook_name(1)]
            )
        expected = raw[hook_name(1)][0, enc.selected].mean(0)
        torch.testing.assert_close(batched[hook_name(1)][i], expected, atol=1e-4, rtol=1e-4)


def test_resume_after_interruption(tiny_model, small_dataset, tmp_path, monkeypatch, count_passes):
    kwargs = dict(cache_dir=tmp_path, batch_size=4, shard_size=8, progress=False)
    count_passes(tiny_model, fail_after=5)  # dies inside the third shard
    with pytest.raises(KeyboardInterrupt):
        cache_activations(tiny_model, small_dataset, HOOKS, **kwargs)
    monkeypatch.undo()
    calls = count_passes(tiny_model)
    # A resumed run keeps the shard plan of the first run, whatever shard_size it is given.
    acts = cache_activations(tiny_model, small_dataset, HOOKS, **{**kwargs, "shard_size": 32})
    total_batches = len(small_dataset) // 4
    assert calls["n"] == total_batches - 4  # two complete shards (2 batches each) were kept
    monkeypatch.undo()
    fresh = cache_activations(
        tiny_model, small_dataset, HOOKS, **{**kwargs, "cache_dir": tmp_path / "f"}
    )
    torch.testing.assert_close(acts[hook_name(1)], fresh[hook_name(1)])


def test_other_model_or_dataset_is_never_read(tiny_model, small_dataset, tmp_path):
    a = cache_activations(tiny_model, small_dataset, HOOKS, cache_dir=tmp_path, progress=False)
    b = cache_activations(tiny_model, small_dataset[:-1], HOOKS, cache_dir=tmp_path, progress=False)
    assert a.path != b.path
    with pytest.raises(CacheMismatchError, match="dataset_hash"):
        load_activation_set(a.path, expect=b.key)
    other = type(a.key)(**{**a.key.__dict__, "model_fingerprint": "another-model"})
    with pytest.raises(CacheMismatchError, match="model_fingerprint"):
        load_activation_set(a.path, expect=other)


def test_per_token_activations(tiny_model, small_dataset, tmp_path):
    sample = small_dataset[:6]
    acts = cache_activations(
        tiny_model, sample, [hook_name(1)], per_token=True, cache_dir=tmp_path, progress=False
    )
    tokens = acts.per_token(hook_name(1))
    assert [len(x) for x in tokens] == acts.n_selected.tolist()
    torch.testing.assert_close(torch.stack([x.mean(0) for x in tokens]), acts[hook_name(1)])


def test_no_hooks_left_on_the_model(tiny_model, small_dataset, tmp_path):
    def hook_count() -> int:
        # The bridge installs 10 hooks of its own on its first forward pass; count them all.
        modules = tiny_model.bridge.modules()
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules)

    cache_activations(tiny_model, small_dataset[:2], HOOKS, cache_dir=tmp_path, progress=False)
    before = hook_count()
    cache_activations(tiny_model, small_dataset[2:4], HOOKS, cache_dir=tmp_path, progress=False)
    assert hook_count() == before
    assert not [n for n, hp in tiny_model.bridge.hook_dict.items() if hp._forward_hooks]


def test_bad_hooks(tiny_model, small_dataset, tmp_path):
    with pytest.raises(ValueError, match="hooks is empty"):
        cache_activations(tiny_model, small_dataset, [], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="from 0 to 1"):
        cache_activations(tiny_model, small_dataset, [hook_name(5)], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown hook"):
        cache_activations(tiny_model, small_dataset, ["blocks.0.attn.hook_z"], cache_dir=tmp_path)
