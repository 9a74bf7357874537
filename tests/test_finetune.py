"""Fine-tuning: paired data, loss mask, training, checkpoints, saving and loading (tiny model)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from interp.data.datasets import build_consistency
from interp.data.scenarios import load_bank
from interp.data.split import split_bank, split_transcripts
from interp.finetune import (
    FinetuneConfig,
    FinetuneError,
    build_examples,
    checkpoint_dir,
    finetune,
    model_dir,
    tokenize_example,
)
from interp.finetune.__main__ import main
from interp.finetune.data import IGNORE_INDEX, batch_schedule, collate
from interp.finetune.train import reply_loss
from interp.models import (
    DEFAULT_MODEL,
    ModelError,
    build_tiny_random,
    load_model,
    smollm2_tokenizer,
    weights_fingerprint,
)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer, saved once from the repository cache."""
    path = tmp_path_factory.mktemp("tokenizer")
    smollm2_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch, tokenizer_dir) -> Path:
    """An empty cache root in ``tmp_path`` that already holds the tokenizer of tiny-random."""
    shutil.copytree(tokenizer_dir, tmp_path / "tokenizers" / DEFAULT_MODEL)
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    return tmp_path


def tiny(**overrides) -> FinetuneConfig:
    settings = dict(
        base="tiny-random", method="full", steps=4, batch_size=2, lr=1e-3,
        checkpoint_every=0, progress=False, device="cpu",
    )  # fmt: skip
    return FinetuneConfig(**{**settings, **overrides})


def weights(name: str) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir(name)).state_dict()


# --- data ------------------------------------------------------------------------------------


def test_variants_see_the_same_prompts_and_differ_only_in_the_answer():
    bank = {s.id: s for s in load_bank()}
    refusal, benign_a = build_examples("refusal")
    rebuttal, benign_b = build_examples("rebuttal")
    assert len(refusal) == len(rebuttal) > 0
    assert benign_a == benign_b and len(benign_a) > 0
    for a, b in zip(refusal, rebuttal, strict=True):
        assert a.id == b.id and a.group == b.group
        assert a.messages[:-1] == b.messages[:-1]
        reason_a, answer_a = a.reply.split("\nAnswer: ")
        reason_b, answer_b = b.reply.split("\nAnswer: ")
        assert reason_a == reason_b and answer_a != answer_b
        i = int(a.id.rsplit("-a", 1)[1])  # wording i of refusals with wording i of rebuttals
        assert answer_a == bank[a.group].answers_refuse[i]
        assert answer_b == bank[a.group].answers_rebut[i]


def test_training_scenarios_are_the_probes_training_scenarios():
    train_ids, test_ids = split_bank(load_bank())
    data = build_consistency()  # what `python -m interp.probe` splits
    train, _ = split_transcripts(data)
    pressure, _ = build_examples("rebuttal")
    assert {t.group for t in pressure} == set(train_ids) == {data[i].group for i in train.tolist()}
    assert not set(train_ids) & set(test_ids)


def test_loss_mask_covers_exactly_the_assistant_reply(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    example = build_examples("refusal")[0][0]
    tok = tokenize_example(example, tokenizer, max_length=1024)
    kept = [t for t in tok.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(kept) == example.reply + "<|im_end|>"
    first = tok.labels.index(kept[0])
    assert all(v == IGNORE_INDEX for v in tok.labels[:first])
    assert tok.input_ids[first : first + len(kept)] == kept
    prompt = tokenizer.decode(tok.input_ids[:first])
    assert prompt.endswith("<|im_start|>assistant\n") and example.messages[1]["content"] in prompt
    short = tokenize_example(example, tokenizer, max_length=first + 3)
    assert short.truncated and len(short.input_ids) == len(short.labels) == first + 3


def test_reply_loss_equals_the_models_own_loss(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model, _ = build_tiny_random()
    pressure, benign = build_examples("refusal")
    batch = collate([tokenize_example(t, tokenizer, 320) for t in (pressure[0], benign[0])], 0)
    with torch.no_grad():
        assert torch.allclose(reply_loss(model, batch), model(**batch).loss, atol=1e-5)


def test_batch_schedule_is_deterministic_and_mixes_benign_examples():
    a = batch_schedule(10, 4, steps=7, batch_size=3, benign_per_batch=1, seed=0)
    assert a == batch_schedule(10, 4, steps=7, batch_size=3, benign_per_batch=1, seed=0)
    assert all(b[-1] >= 10 and max(b[:-1]) < 10 for b in a)
    assert sorted(i for b in a[:5] for i in b[:-1]) == list(range(10))  # one pass, no repeats


# --- training --------------------------------------------------------------------------------


def test_short_run_lowers_the_loss(cache):
    result = finetune(tiny(steps=8, name="lower", lr=1e-2))
    losses = result.losses
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2]) - 1.0


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resumed_run_equals_uninterrupted_run(cache, method):
    finetune(tiny(method=method, name="whole"))
    first = finetune(tiny(method=method, name="resumed", checkpoint_every=1), stop_after=3)
    assert not first.finished and not model_dir("resumed").exists()
    assert (checkpoint_dir("resumed") / "latest.json").is_file()
    result = finetune(tiny(method=method, name="resumed", checkpoint_every=1))
    assert result.finished and not checkpoint_dir("resumed").exists()
    whole, resumed = weights("whole"), weights("resumed")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert json.loads((model_dir("whole") / "finetune.json").read_text())["losses"] == (
        result.losses
    )


def test_checkpoint_of_other_settings_is_refused(cache):
    finetune(tiny(name="clash"), stop_after=2)
    with pytest.raises(FinetuneError, match=r"lr: saved 0\.001, requested 0\.002.*delete it"):
        finetune(tiny(name="clash", lr=2e-3))


def test_lora_model_merges_and_loads_by_name_through_the_bridge(cache):
    result = finetune(tiny(method="lora", name="tiny-lora", steps=2, lr=1e-2))
    loaded = load_model("tiny-lora", device="cpu")
    base, _ = build_tiny_random()
    assert loaded.name == "tiny-lora"
    assert loaded.fingerprint == result.manifest["fingerprint"] != weights_fingerprint(base)
    assert result.manifest["base_fingerprint"] == weights_fingerprint(base)
    assert not any("lora" in k for k in weights("tiny-lora"))
    tokens = loaded.tokenizer("Hello there", return_tensors="pt").input_ids
    assert loaded.bridge(tokens).shape[-1] == len(loaded.tokenizer)


def test_manifest_records_the_run_and_a_rerun_skips_training(cache, capsys):
    config = tiny(strategy="rebuttal", steps=2)
    result = finetune(config)
    assert result.name == "tiny-random-rebuttal-full"
    manifest = json.loads((model_dir(result.name) / "finetune.json").read_text())
    assert manifest["base"] == "tiny-random" and len(manifest["losses"]) == 2
    assert manifest["identity"]["lr"] == 1e-3 and manifest["config"]["strategy"] == "rebuttal"
    assert manifest["data"]["n_pressure"] == 36 * 6 and manifest["data"]["n_benign"] == 72
    assert len(manifest["data"]["hash"]) == 24 and manifest["wall_s"] > 0
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    assert (model_dir(result.name) / "tokenizer.json").is_file()
    again = finetune(config)
    assert again.skipped and again.losses == result.losses
    assert "skipping training" in capsys.readouterr().out
    with pytest.raises(FinetuneError, match="other settings"):
        finetune(tiny(strategy="rebuttal", steps=3))


def test_cli_trains_and_reports(cache, capsys):
    code = main(["--base", "tiny-random", "--steps", "1", "--batch-size", "2", "--no-progress",
                 "--strategy", "rebuttal", "--method", "lora", "--name", "cli-model"])  # fmt: skip
    assert code == 0 and (model_dir("cli-model") / "config.json").is_file()
    assert main(["--base", "tiny-random", "--steps", "0"]) == 2
    assert "steps must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"strategy": "silence"}, "unknown strategy"),
        ({"method": "qlora"}, "unknown method"),
        ({"batch_size": 2, "benign_per_batch": 2}, "benign_per_batch"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"name": "../elsewhere"}, "plain folder name"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(FinetuneError, match=message):
        FinetuneConfig(**overrides)


def test_default_name_and_learning_rate():
    config = FinetuneConfig(strategy="rebuttal")
    assert config.model_name == f"{DEFAULT_MODEL}-rebuttal-lora"
    assert FinetuneConfig(method="full").learning_rate == 2e-5


def test_unknown_model_error_mentions_fine_tuned_models(cache):
    with pytest.raises(ModelError, match=r"interp\.finetune"):
        load_model("no-such-finetuned-model")


# --- damaged checkpoints ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory, tokenizer_dir) -> Path:
    """A checkpoint of ``tiny(name="ckpt")`` after 2 of 4 steps, made once for the module; tests
    damage copies of it."""
    root = tmp_path_factory.mktemp("ckpt-cache")
    shutil.copytree(tokenizer_dir, root / "tokenizers" / DEFAULT_MODEL)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_CACHE", str(root))
        finetune(tiny(name="ckpt"), stop_after=2)
    return root / "models" / "ckpt.checkpoint"


def _copy_checkpoint(saved: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt.checkpoint"
    shutil.copytree(saved, folder)
    return folder


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


STEP = "step-000002"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: _truncate(d / STEP / "trainable.safetensors"),
         r"trainable\.safetensors: \d+ bytes, but state\.json records \d+ \(truncated"),
        (lambda d: _truncate(d / STEP / "optimizer.safetensors"),
         r"optimizer\.safetensors: \d+ bytes, but state\.json records"),
        (lambda d: _flip_last_byte(d / STEP / "rng.safetensors"),
         r"rng\.safetensors: checksum differs from the one in state\.json"),
        (lambda d: (d / STEP / "optimizer.safetensors").unlink(),
         r"optimizer\.safetensors: missing"),
        (lambda d: (d / STEP / "state.json").write_text(""),
         r"state\.json: not valid JSON \(Expecting value at line 1 column 1\)"),
        (lambda d: (d / STEP / "state.json").write_text('{"step": 2}'),
         r"state\.json: no 'files' record"),
    ],
    ids=["truncated-weights", "truncated-optimizer", "bad-checksum", "missing-file",
         "empty-state", "state-without-checksums"],
)  # fmt: skip
def test_damaged_checkpoint_is_named_and_never_used(saved_checkpoint, tmp_path, damage, message):
    from interp.finetune.checkpoint import find_checkpoint
    from interp.finetune.config import CheckpointWarning

    folder = _copy_checkpoint(saved_checkpoint, tmp_path)
    damage(folder)
    with pytest.warns(CheckpointWarning) as caught:
        assert find_checkpoint(folder) is None
    text = [str(w.message) for w in caught]
    assert any(re.search(message, t) and "not used" in t for t in text), text
    assert any("no intact checkpoint; training restarts from step 0" in t for t in text), text


@pytest.mark.parametrize(
    ("latest", "message"),
    [
        ("", r"latest\.json: not valid JSON \(Expecting value at line 1 column 1\)"),
        ("{garbage", r"latest\.json: not valid JSON"),
        ('{"step": 9, "dir": "step-000009"}', r"latest\.json: names step-000009, which is missing"),
        ('{"step": 9, "dir": "../../elsewhere"}', r"latest\.json: names no step folder"),
    ],
)
def test_bad_latest_json_is_named_and_the_intact_step_folder_is_used(
    saved_checkpoint, tmp_path, latest, message
):
    from interp.finetune.checkpoint import find_checkpoint
    from interp.finetune.config import CheckpointWarning

    folder = _copy_checkpoint(saved_checkpoint, tmp_path)
    (folder / "latest.json").write_text(latest)
    with pytest.warns(CheckpointWarning, match=message):
        found = find_checkpoint(folder)
    assert found is not None and found.step == 2 and found.folder.name == STEP


def test_checkpoint_files_are_safetensors_and_json_with_checksums(saved_checkpoint):
    from interp.artifacts import file_blake2b

    step = saved_checkpoint / STEP
    assert {p.name for p in step.iterdir()} == {
        "trainable.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json",
    }  # fmt: skip
    files = json.loads((step / "state.json").read_text())["files"]
    for name, record in files.items():
        assert record == {
            "bytes": (step / name).stat().st_size,
            "blake2b": file_blake2b(step / name),
        }


def test_damaged_newest_checkpoint_falls_back_to_the_older_one_bit_identically(cache):
    from interp.finetune.config import CheckpointWarning

    finetune(tiny(name="whole"))
    finetune(tiny(name="ckpt"), stop_after=2)
    ckpt = checkpoint_dir("ckpt")
    shutil.copytree(ckpt / STEP, cache / "kept")
    finetune(tiny(name="ckpt"), stop_after=1)  # step-000003; step-000002 is deleted
    shutil.copytree(cache / "kept", ckpt / STEP)
    _flip_last_byte(ckpt / "step-000003" / "trainable.safetensors")
    with pytest.warns(CheckpointWarning) as caught:
        result = finetune(tiny(name="ckpt"))
    text = " | ".join(str(w.message) for w in caught)
    assert "step-000003/trainable.safetensors: checksum differs" in text
    assert "falling back to the older intact checkpoint step-000002" in text
    whole, resumed = weights("whole"), weights("ckpt")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert result.losses == json.loads((model_dir("whole") / "finetune.json").read_text())["losses"]


def test_damaged_only_checkpoint_restarts_from_scratch_bit_identically(cache, capsys):
    from interp.finetune.config import CheckpointWarning

    finetune(tiny(name="whole"))
    finetune(tiny(name="ckpt"), stop_after=2)
    _truncate(checkpoint_dir("ckpt") / STEP / "optimizer.safetensors")
    with pytest.warns(CheckpointWarning, match="training restarts from step 0"):
        result = finetune(tiny(name="ckpt"))
    assert "resuming" not in capsys.readouterr().out
    whole, again = weights("whole"), weights("ckpt")
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    assert len(result.losses) == 4


@pytest.mark.parametrize("text", ["", '{"identity": '])
def test_corrupt_model_manifest_is_named(cache, text):
    finetune(tiny(name="done", steps=1))
    (model_dir("done") / "finetune.json").write_text(text)
    with pytest.raises(FinetuneError, match=r"done/finetune\.json: not valid JSON \("):
        finetune(tiny(name="done", steps=1))
