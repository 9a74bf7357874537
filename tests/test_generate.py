import json
import shutil

import pytest
import torch
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

from interp.data.datasets import build_consistency
from interp.data.transcripts import load_transcripts, transcript_from_dict
from interp.hooks import hook_name
from interp.models import build_tiny_random
from interp.models.plain import active_hooks, plain_model
from interp.text.generation import (
    GenerationConfig,
    GenerationError,
    Prompt,
    generate,
    sidecar_path,
    stop_token_ids,
)

SAMPLED = GenerationConfig(max_new_tokens=6, temperature=1.0, top_p=0.9, n=2, batch_size=2)


def make_prompts(count: int) -> list[Prompt]:
    """One prompt per scenario (the scenario's first transcript without its reply)."""
    firsts = {}
    for t in build_consistency():
        firsts.setdefault(t.group, t)
    return [Prompt.from_transcript(t) for t in list(firsts.values())[:count]]


def counting(model, monkeypatch, fail_on: int | None = None, edit=None):
    """Count calls to the HF model's ``generate``; raise KeyboardInterrupt on call ``fail_on``
    (1-based); ``edit(output, input_width)`` may rewrite the output."""
    hf = model.bridge.original_model
    original = hf.generate
    calls = {"n": 0}

    def wrapped(input_ids, *args, **kwargs):
        calls["n"] += 1
        if fail_on is not None and calls["n"] == fail_on:
            raise KeyboardInterrupt("simulated interruption")
        out = original(input_ids, *args, **kwargs)
        return out if edit is None else edit(out, input_ids.shape[1])

    monkeypatch.setattr(hf, "generate", wrapped)
    return calls


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def baseline(tiny_model, tmp_path_factory):
    """An uninterrupted sampled run: 5 prompts in 3 batches, 2 samples each."""
    path = tmp_path_factory.mktemp("baseline") / "samples.jsonl"
    out = generate(tiny_model, make_prompts(5), SAMPLED, path, progress=False)
    return path, out


def copy_run(baseline, tmp_path):
    path = tmp_path / "samples.jsonl"
    shutil.copy(baseline[0], path)
    shutil.copy(sidecar_path(baseline[0]), sidecar_path(path))
    return path


def test_output_format_and_samples(tiny_model, baseline):
    path, out = baseline
    prompts = make_prompts(5)
    assert [t.id for t in out] == [f"{p.id}-s{k}" for p in prompts for k in range(2)]
    assert len({t.id for t in out}) == 10
    for lineno, line in enumerate(lines(path), start=1):
        t = transcript_from_dict(json.loads(line), f"{path}:{lineno}")
        assert t.label is None
        assert set(t.meta) >= {"sample", "generated", "n_new_tokens", "stopped"}
    by_id = {t.id: t for t in load_transcripts(path)}
    assert set(by_id) == {t.id for t in out}
    for i, p in enumerate(prompts):
        for k in range(2):
            t = out[2 * i + k]
            assert by_id[t.id] == t and by_id[t.id].meta == t.meta
            assert t.group == p.group
            assert t.messages[:-1] == p.messages
            assert t.messages[-1]["role"] == "assistant"
            assert t.meta == {
                **p.meta,
                "sample": k,
                "generated": True,
                "n_new_tokens": 6,
                "stopped": "length",
            }
    # two samples of one prompt differ (random 6-token replies from a 49k vocabulary)
    assert out[0].reply != out[1].reply
    side = json.loads(sidecar_path(path).read_text())
    assert side["config"] == {**SAMPLED.__dict__}
    assert side["model"] == {"name": tiny_model.name, "fingerprint": tiny_model.fingerprint}
    assert side["stop_token_ids"] == [tiny_model.tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_sampling_reproducible_and_keeps_caller_rng(tiny_model, baseline, tmp_path):
    prompts = make_prompts(5)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    again = generate(tiny_model, prompts, SAMPLED, tmp_path / "a.jsonl", progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (tmp_path / "a.jsonl").read_bytes() == baseline[0].read_bytes()
    assert [t.reply for t in again] == [t.reply for t in baseline[1]]
    other = GenerationConfig(**{**SAMPLED.__dict__, "seed": 1})
    reseeded = generate(tiny_model, prompts[:2], other, tmp_path / "b.jsonl", progress=False)
    assert [t.reply for t in reseeded] != [t.reply for t in baseline[1][:4]]


def test_greedy_batched_equals_one_at_a_time(tiny_model, tmp_path):
    """Left padding changes nothing: a batch of prompts of different lengths gives the same
    greedy replies as each prompt alone. (A strong repetition penalty keeps the random
    model from repeating one token, so the replies are not trivially equal.)"""
    prompts = make_prompts(3)
    tokenizer = tiny_model.tokenizer
    texts = [
        tokenizer.apply_chat_template(list(p.messages), add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert len(set(lengths)) == 3, lengths  # the batch really is padded
    config = GenerationConfig(max_new_tokens=6, repetition_penalty=3.0, batch_size=3)
    batched = generate(tiny_model, prompts, config, tmp_path / "batched.jsonl", progress=False)
    single = GenerationConfig(max_new_tokens=6, repetition_penalty=3.0, batch_size=1)
    alone = generate(tiny_model, prompts, single, tmp_path / "alone.jsonl", progress=False)
    assert [t.reply for t in batched] == [t.reply for t in alone]
    assert all(t.reply for t in batched)
    assert len({t.reply for t in batched}) == 3


def test_greedy_reply_equals_stepwise_decoding_of_the_hooked_model(tiny_model, tmp_path):
    """Generation (the plain HF model behind the bridge, with its key-value cache) writes the
    reply the hooked model itself would: greedy decoding one full forward pass per token
    gives the same tokens (with transformers' repetition penalty: a logit of a token already
    in the sequence is divided by the penalty when positive, multiplied when negative, which
    keeps the random model from repeating one token). Generation *through* the bridge (with
    hooks active) is checked against this path in
    test_hooks_on_the_bridge_act_during_generation."""
    prompt = make_prompts(1)
    config = GenerationConfig(max_new_tokens=8, repetition_penalty=3.0)
    reply = generate(tiny_model, prompt, config, tmp_path / "g.jsonl", progress=False)[0].reply
    tokenizer = tiny_model.tokenizer
    text = tokenizer.apply_chat_template(
        list(prompt[0].messages), add_generation_prompt=True, tokenize=False
    )
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    new: list[int] = []
    with torch.inference_mode():
        for _ in range(8):
            logits = tiny_model.bridge(ids)[0, -1]
            seen = logits[ids[0]]
            logits[ids[0]] = torch.where(seen > 0, seen / 3.0, seen * 3.0)
            token = int(logits.argmax())
            if token in stop_token_ids(tiny_model):
                break
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    assert len(set(new)) > 1  # the random model does not just repeat one token here
    assert reply == tokenizer.decode(new, skip_special_tokens=True).strip()


def test_empty_reply_is_kept(tiny_model, tmp_path):
    # greedy with the default penalty: the random model repeats "\n", stripped to ""
    config = GenerationConfig(max_new_tokens=4)
    out = generate(tiny_model, make_prompts(1), config, tmp_path / "g.jsonl", progress=False)
    assert out[0].reply == ""
    assert out[0].meta["n_new_tokens"] == 4
    assert load_transcripts(tmp_path / "g.jsonl")[0].reply == ""


def test_stops_at_end_of_turn(tiny_model, tmp_path, monkeypatch):
    eos = tiny_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert eos in stop_token_ids(tiny_model)

    def end_turn_early(out, width):
        out = out.clone()
        out[0, width + 2] = eos  # first prompt's reply: 2 tokens, then end of turn
        out[0, width + 3 :] = tiny_model.tokenizer.pad_token_id
        return out

    counting(tiny_model, monkeypatch, edit=end_turn_early)
    config = GenerationConfig(max_new_tokens=6, repetition_penalty=3.0, batch_size=1)
    out = generate(tiny_model, make_prompts(1), config, tmp_path / "g.jsonl", progress=False)
    assert out[0].meta["stopped"] == "eos"
    assert out[0].meta["n_new_tokens"] == 3
    assert "<|im_end|>" not in out[0].reply and out[0].reply


def test_resume_after_interruption(tiny_model, baseline, tmp_path, monkeypatch):
    prompts = make_prompts(5)
    path = tmp_path / "samples.jsonl"
    with monkeypatch.context() as m:
        counting(tiny_model, m, fail_on=2)
        with pytest.raises(KeyboardInterrupt):
            generate(tiny_model, prompts, SAMPLED, path, progress=False)
    assert len(lines(path)) == 4  # the first batch: 2 prompts x 2 samples
    calls = counting(tiny_model, monkeypatch)
    out = generate(tiny_model, prompts, SAMPLED, path, progress=False)
    assert calls["n"] == 2  # only the two batches not done
    ids = [json.loads(line)["id"] for line in lines(path)]
    assert len(ids) == len(set(ids)) == 10
    assert path.read_bytes() == baseline[0].read_bytes()
    assert out == baseline[1]
    assert [t.meta for t in out] == [t.meta for t in baseline[1]]
    # a finished run is read back without generating
    assert generate(tiny_model, prompts, SAMPLED, path, progress=False) == out
    assert calls["n"] == 2


def test_truncated_last_line_is_repaired(tiny_model, baseline, tmp_path, monkeypatch):
    path = copy_run(baseline, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # a crash in the middle of the last line
    calls = counting(tiny_model, monkeypatch)
    with pytest.warns(UserWarning, match=r"samples.jsonl:10: dropping an incomplete last line"):
        out = generate(tiny_model, make_prompts(5), SAMPLED, path, progress=False)
    assert calls["n"] == 1  # only the last batch runs again, with its own seed
    assert path.read_bytes() == baseline[0].read_bytes()
    assert out == baseline[1]


def test_missing_final_newline_is_added(tiny_model, baseline, tmp_path, monkeypatch):
    path = copy_run(baseline, tmp_path)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    calls = counting(tiny_model, monkeypatch)
    assert generate(tiny_model, make_prompts(5), SAMPLED, path, progress=False) == baseline[1]
    assert calls["n"] == 0
    assert path.read_bytes() == baseline[0].read_bytes()


def test_corrupt_middle_line_is_an_error(tiny_model, baseline, tmp_path):
    path = copy_run(baseline, tmp_path)
    rows = lines(path)
    rows[2] = rows[2][:30]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(GenerationError, match=r"samples.jsonl:3: not valid JSON"):
        generate(tiny_model, make_prompts(5), SAMPLED, path, progress=False)


def test_out_file_of_other_prompts_is_refused(tiny_model, baseline, tmp_path):
    path = copy_run(baseline, tmp_path)
    others = make_prompts(7)[5:]
    with pytest.raises(GenerationError, match=r"samples.jsonl:1: .*another prompt set"):
        generate(tiny_model, others, SAMPLED, path, progress=False)
    changed = make_prompts(5)
    first = changed[0]
    changed[0] = Prompt(
        first.id, first.group, (*first.messages[:-1], {"role": "user", "content": "x"})
    )
    with pytest.raises(GenerationError, match="another prompt set"):
        generate(tiny_model, changed, SAMPLED, path, progress=False)


def test_config_mismatch_is_refused(tiny_model, baseline, tmp_path, monkeypatch):
    path = copy_run(baseline, tmp_path)
    calls = counting(tiny_model, monkeypatch)
    other = GenerationConfig(**{**SAMPLED.__dict__, "top_p": 0.5})
    with pytest.raises(GenerationError, match=r"config\.top_p: saved 0\.9, requested 0\.5"):
        generate(tiny_model, make_prompts(5), other, path, progress=False)
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar["model"]["fingerprint"] = "0" * 24
    sidecar_path(path).write_text(json.dumps(sidecar))
    with pytest.raises(GenerationError, match=r"model.fingerprint"):
        generate(tiny_model, make_prompts(5), SAMPLED, path, progress=False)
    sidecar_path(path).unlink()
    with pytest.raises(GenerationError, match="is missing"):
        generate(tiny_model, make_prompts(5), SAMPLED, path, progress=False)
    assert calls["n"] == 0
    assert path.read_bytes() == baseline[0].read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, r"n \(samples per prompt\) must be >= 1"),
        ({"temperature": -0.5}, "temperature must be >= 0"),
        ({"n": 3}, "greedy decoding gives n identical samples; set temperature > 0"),
        ({"temperature": 0.7, "top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"repetition_penalty": 0}, "repetition_penalty must be > 0"),
        ({"n": 2.0, "temperature": 1.0}, "n must be an integer"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**kwargs)


def test_prompt_validation(tiny_model, tmp_path):
    user = {"role": "user", "content": "hi"}
    reply = {"role": "assistant", "content": "hello"}
    assert Prompt("p", "g", [user]).messages == (user,)
    with pytest.raises(ValueError, match="last message must be the user turn"):
        Prompt("p", "g", (user, reply))
    with pytest.raises(ValueError, match="messages is empty"):
        Prompt("p", "g", ())
    with pytest.raises(ValueError, match="has role 'bot'"):
        Prompt("p", "g", ({"role": "bot", "content": "x"}, user))
    with pytest.raises(ValueError, match="'role' and 'content' only"):
        Prompt("p", "g", ({"role": "user", "content": "x", "name": "y"},))
    with pytest.raises(ValueError, match="id must be a non-empty string"):
        Prompt("", "g", (user,))
    with pytest.raises(ValueError, match="JSON-serialisable"):
        Prompt("p", "g", (user,), meta={"x": object()})
    t = build_consistency()[0]
    p = Prompt.from_transcript(t)
    assert p.messages == t.messages[:-1] and p.id == t.id
    assert p.meta == {"domain": t.meta["domain"], "source_id": t.id}  # reply stances dropped
    with pytest.raises(ValueError, match="got role 'assistant'"):
        Prompt.from_transcript(t, drop_last=False)
    with pytest.raises(ValueError, match="duplicate prompt ids"):
        generate(tiny_model, [p, p], SAMPLED, tmp_path / "x.jsonl", progress=False)
    with pytest.raises(ValueError, match="no prompts"):
        generate(tiny_model, [], SAMPLED, tmp_path / "x.jsonl", progress=False)
    assert not (tmp_path / "x.jsonl").exists()


# --- the plain model, hooks and dispatched models ------------------------------------------

GREEDY = GenerationConfig(max_new_tokens=6, repetition_penalty=3.0, batch_size=2)


def first_block_during_generate(model, monkeypatch) -> list[str]:
    """Record, at each call of the HF model's ``generate``, the class of its first block:
    ``LlamaDecoderLayer`` on the plain model, ``BlockBridge`` through the bridge."""
    hf = model.bridge.original_model
    original = hf.generate
    seen: list[str] = []

    def wrapped(*args, **kwargs):
        seen.append(type(hf.model.layers[0]).__name__)
        return original(*args, **kwargs)

    monkeypatch.setattr(hf, "generate", wrapped)
    return seen


def test_generation_runs_on_the_plain_model_and_puts_the_bridge_back(
    tiny_model, tmp_path, monkeypatch
):
    ids = torch.tensor([[1, 50, 300, 7]])
    with torch.inference_mode():
        before = tiny_model.bridge(ids)
    seen = first_block_during_generate(tiny_model, monkeypatch)
    generate(tiny_model, make_prompts(3), GREEDY, tmp_path / "g.jsonl", progress=False)
    assert seen == ["LlamaDecoderLayer", "LlamaDecoderLayer"]  # two batches, both plain
    hf = tiny_model.bridge.original_model
    assert type(hf.model.layers[0]).__name__ == "BlockBridge"
    assert type(hf.model.layers[0].self_attn).__name__.endswith("AttentionBridge")
    with torch.inference_mode():
        assert torch.equal(tiny_model.bridge(ids), before)
        _, cache = tiny_model.bridge.run_with_cache(ids, names_filter=[hook_name(1)])
    assert cache[hook_name(1)].shape == (1, 4, tiny_model.d_model)


def test_bridge_is_put_back_after_an_interrupt(tiny_model, tmp_path, monkeypatch):
    counting(tiny_model, monkeypatch, fail_on=1)
    with pytest.raises(KeyboardInterrupt):
        generate(tiny_model, make_prompts(1), GREEDY, tmp_path / "g.jsonl", progress=False)
    layers = tiny_model.bridge.original_model.model.layers
    assert [type(layer).__name__ for layer in layers] == ["BlockBridge", "BlockBridge"]
    assert type(tiny_model.bridge.original_model.lm_head).__name__ == "UnembeddingBridge"


def test_processed_weights_generate_through_the_bridge(tiny_model, tmp_path, monkeypatch):
    """After ``process_weights`` (folded norms, centred weights) the original modules no
    longer compute the model: generation must then run through the bridge."""
    seen = first_block_during_generate(tiny_model, monkeypatch)
    monkeypatch.setattr(tiny_model.bridge, "_weights_processed", True, raising=False)
    generate(tiny_model, make_prompts(1), GREEDY, tmp_path / "g.jsonl", progress=False)
    assert seen == ["BlockBridge"]


def test_plain_model_is_the_hf_model_with_the_bridges_weights(tiny_model):
    """Inside ``plain_model`` the HF model computes exactly what a separate copy of the same
    weights computes, on the bridge's own parameter tensors (nothing copied)."""
    copy, _ = build_tiny_random()
    copy.eval()
    ids = torch.tensor([[1, 50, 300, 7, 9, 11], [5, 4, 3, 2, 1, 0]])
    bridge_params = {p.data_ptr() for p in tiny_model.bridge.parameters()}
    with plain_model(tiny_model.bridge) as hf, torch.inference_mode():
        assert not any(isinstance(m, GeneralizedComponent) for m in hf.modules())
        assert {p.data_ptr() for p in hf.parameters()} == bridge_params
        assert torch.equal(hf(ids).logits, copy(ids).logits)


def test_hooks_on_the_bridge_act_during_generation(tiny_model, tmp_path, monkeypatch):
    """With a hook on the bridge, generation runs through the bridge and the hook sees every
    forward pass; a no-op hook leaves the greedy replies unchanged (the bridge's attention
    handles the key-value cache as the plain model does), a steering hook changes them.
    transformers 5.24 breaks the no-op case (the bridge's attention modules mishandle its
    cache: a sensible first token, then garbage), hence the upper bound on transformers in
    pyproject.toml."""
    prompts = make_prompts(3)
    plain = generate(tiny_model, prompts, GREEDY, tmp_path / "plain.jsonl", progress=False)
    seen = first_block_during_generate(tiny_model, monkeypatch)
    calls = {"n": 0}

    def noop(act, hook):
        calls["n"] += 1

    with tiny_model.bridge.hooks(fwd_hooks=[(hook_name(0), noop)]):
        assert active_hooks(tiny_model.bridge) == ["blocks.0.hook_out"]
        hooked = generate(tiny_model, prompts, GREEDY, tmp_path / "noop.jsonl", progress=False)
    assert seen == ["BlockBridge", "BlockBridge"]
    assert calls["n"] == 2 * GREEDY.max_new_tokens  # two batches, one pass per new token
    assert [t.reply for t in hooked] == [t.reply for t in plain]
    assert active_hooks(tiny_model.bridge) == []

    steer = torch.randn(tiny_model.d_model, generator=torch.Generator().manual_seed(1)) * 20

    def add(act, hook):
        return act + steer

    with tiny_model.bridge.hooks(fwd_hooks=[(hook_name(0), add)]):
        steered = generate(tiny_model, prompts, GREEDY, tmp_path / "steer.jsonl", progress=False)
    assert [t.reply for t in steered] != [t.reply for t in plain]


def test_dispatched_model_generates_the_same_replies(
    tiny_model, dispatched_tiny, tmp_path, monkeypatch
):
    """A model dispatched with accelerate (``device_map``) generates the undispatched model's
    greedy replies, through accelerate's hooks, on the plain path and through the bridge."""
    from accelerate.hooks import AlignDevicesHook

    dispatched = dispatched_tiny
    assert dispatched.fingerprint == tiny_model.fingerprint
    assert hasattr(dispatched.bridge.original_model, "hf_device_map")
    moved = {"n": 0}
    pre_forward = AlignDevicesHook.pre_forward

    def counted(self, module, *args, **kwargs):
        moved["n"] += 1
        return pre_forward(self, module, *args, **kwargs)

    monkeypatch.setattr(AlignDevicesHook, "pre_forward", counted)
    prompts = make_prompts(3)
    expected = generate(tiny_model, prompts, GREEDY, tmp_path / "whole.jsonl", progress=False)
    assert moved["n"] == 0
    out = generate(dispatched, prompts, GREEDY, tmp_path / "split.jsonl", progress=False)
    assert moved["n"] > 0  # accelerate's hooks ran
    assert [t.reply for t in out] == [t.reply for t in expected]
    with dispatched.bridge.hooks(fwd_hooks=[(hook_name(0), lambda act, hook: None)]):
        hooked = generate(dispatched, prompts, GREEDY, tmp_path / "hooked.jsonl", progress=False)
    assert [t.reply for t in hooked] == [t.reply for t in expected]
