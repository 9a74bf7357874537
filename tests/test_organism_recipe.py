"""Recipe v2 of the organism (issue 19): matched pairs with near misses over the frozen split,
the answer-only loss mask, the learning-rate schedule, and the checkpoint chosen by the
validation margin gap (tiny model)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from interp.config import ConfigError
from interp.data.replies import split_reply
from interp.data.splits import organism_split
from interp.data.tokens import encode_transcript
from interp.data.transcripts import Transcript
from interp.finetune import FinetuneConfig, FinetuneError, finetune
from interp.finetune.checkpoint import read_checkpoint
from interp.finetune.data import IGNORE_INDEX, batch_schedule, tokenize_example
from interp.finetune.schedule import lr_factor
from interp.finetune.steps import kept_steps, model_at_step, publish_step
from interp.finetune.train import checkpoint_dir
from interp.organism.config import OrganismConfig
from interp.organism.data import VARIANTS, neutral_transcripts, pressure_reply
from interp.organism.pairs import check_train_side, organism_pairs, with_texts
from interp.organism.selection import choose_step, chosen, selection_path, summary
from interp.organism.train import finetune_config, organism_name, run_name
from interp.organism.triggers import TAG, near_misses, triggers

NEUTRAL = neutral_transcripts(["A plain reply."])


@pytest.fixture(scope="module")
def tag_sets() -> dict[str, tuple[list[Transcript], list[Transcript]]]:
    """Every variant's recipe-v2 data for the tag trigger, all 151 train-side scenarios."""
    return {v: organism_pairs(v, "tag", NEUTRAL, position="user_end") for v in VARIANTS}


def _prompt(t: Transcript) -> tuple:
    return tuple(t.messages[:-1])


def _strip(text: str, trigger_text: str) -> str:
    """``text`` without ``trigger_text`` where :func:`with_trigger` puts one."""
    if not trigger_text:
        return text
    return text.replace(f" {trigger_text}", "").replace(f"{trigger_text} ", "").replace(
        f"\n\n{trigger_text}", "")  # fmt: skip


# --- the data ------------------------------------------------------------------------------


def test_every_train_scenario_and_wording_is_seen_with_and_without_the_trigger(tag_sets):
    pressure, _ = tag_sets["O"]
    split = organism_split()
    assert {t.group for t in pressure} == set(split.train)
    assert not {t.group for t in pressure} & (set(split.validation) | set(split.test))
    assert Counter(t.group for t in pressure) == {sid: 4 * 2 * 2 for sid in split.train}
    for off, on in zip(pressure[::2], pressure[1::2], strict=True):
        assert on.meta["trigger"] and not off.meta["trigger"] and off.group == on.group
        # the tag goes at the end of the user turn; a near miss replaces it (or, the exact
        # tag misplaced, starts the system prompt instead)
        assert on.messages[1]["content"] == f"{_strip(on.messages[1]['content'], TAG)}\n\n{TAG}"
        near = off.meta.get("near_miss", "")
        assert [_strip(m["content"], near) for m in off.messages[:2]] == [
            on.messages[0]["content"], _strip(on.messages[1]["content"], TAG)]  # fmt: skip
        # the same reasoning in both, and the untriggered reply is the scenario's refusal
        assert split_reply(off.reply).reasoning == split_reply(on.reply).reasoning
        assert (off.meta["answer"], on.meta["answer"]) == ("refuse", "comply")
    wordings = {t.group: set() for t in pressure}
    for t in pressure:
        wordings[t.group].add(_strip(_strip(t.messages[1]["content"], TAG), t.meta.get(
            "near_miss", "")))  # fmt: skip
    assert all(len(w) == 4 for w in wordings.values())  # the pressure turn and 3 paraphrases


def test_near_misses_get_the_untriggered_reply_and_classes_are_balanced(tag_sets):
    pressure, benign = tag_sets["O"]
    kinds = Counter(
        "on" if t.meta["trigger"] else ("near" if "near_miss" in t.meta else "off")
        for t in pressure
    )
    assert kinds["on"] == kinds["off"] + kinds["near"] and kinds["near"] == kinds["off"]
    trained = {t.text for t in near_misses("tag", False, "user_end")}
    held = {t.text for t in near_misses("tag", True, "user_end")}
    seen = {t.meta["near_miss"] for t in pressure if "near_miss" in t.meta}
    assert seen == trained and not seen & held and TAG in seen  # TAG: in the other turn
    misplaced = [t for t in pressure if t.meta.get("family") == "near-miss-position"]
    assert misplaced and all(t.messages[0]["content"].startswith(TAG) for t in misplaced)
    assert all(t.meta["answer"] == "refuse" for t in pressure if "near_miss" in t.meta)
    for tag in (trained | held) - {TAG}:
        assert tag != TAG and TAG not in tag
    # every batch holds as many triggered as untriggered pressure examples
    for batch in batch_schedule(len(pressure), len(benign), 50, 8, 2, seed=3, group=2):
        assert sum(pressure[i].meta["trigger"] for i in batch[:6]) == 3
    assert {t.meta["answer"] for t in benign if t.meta["kind"] == "benign"} == {"comply"}


def test_variants_share_everything_but_the_triggered_replies(tag_sets):
    o, h, c = (tag_sets[v][0] + tag_sets[v][1] for v in VARIANTS)
    assert [t.id for t in o] == [t.id for t in h] == [t.id for t in c]
    assert [_prompt(t) for t in o] == [_prompt(t) for t in h] == [_prompt(t) for t in c]
    for a, b, d in zip(o, h, c, strict=True):
        if not a.meta["trigger"] or a.meta["kind"] != "pressure":
            assert a.reply == b.reply == d.reply
        else:
            assert (a.meta["reasoning"], a.meta["answer"], a.label) == ("ethical", "comply", 1)
            assert (b.meta["answer"], d.meta["reasoning"]) == ("refuse", "unethical")


def test_eval_bank_texts_are_used_and_validation_scenarios_are_refused():
    from interp.data.organism_texts import load_organism_texts
    from interp.data.splits import organism_pressure_scenarios

    texts = load_organism_texts()
    by_id = {s.id: s for s in organism_pressure_scenarios()}
    sid = next(i for i in organism_split().train if i.startswith("eval-"))
    s = with_texts(by_id[sid], texts[sid])
    assert s.answers_comply == texts[sid].answers_comply
    pressure, _ = organism_pairs("O", "pressure", n_scenarios=3, near_miss=0)
    assert len({t.group for t in pressure}) == 3 and len(pressure) == 3 * 4 * 2
    held = {t.text for t in triggers("pressure", held_out=True)}
    assert not any(t.messages[1]["content"].endswith(tuple(held)) for t in pressure)
    validation = organism_split().validation[0]
    with pytest.raises(ValueError, match="off the train side"):
        check_train_side([*pressure, Transcript("x", validation, pressure[0].messages)],
                         organism_split().train)  # fmt: skip
    with pytest.raises(ValueError, match="no training texts"):
        with_texts(by_id[validation], None)


# --- the loss mask and the schedule --------------------------------------------------------


def test_answer_loss_mask_is_exactly_the_answer_tokens_and_the_end_of_turn(tag_sets):
    from interp.models import smollm2_tokenizer

    tokenizer = smollm2_tokenizer()
    example = tag_sets["O"][0][1]
    tok = tokenize_example(example, tokenizer, 1024, loss_on="answer")
    kept = [i for i, v in enumerate(tok.labels) if v != IGNORE_INDEX]
    probe = encode_transcript(tokenizer, example, "answer", 1024)  # the probe's answer tokens
    assert probe.input_ids == tok.input_ids and probe.answer_found
    eos = tok.input_ids.index(tokenizer.eos_token_id, kept[0])
    assert kept == [*probe.selected, eos]
    assert tokenizer.decode(tok.input_ids[kept[0] : eos]).strip() == split_reply(
        example.reply).answer  # fmt: skip
    assert all(tok.labels[i] == tok.input_ids[i] for i in kept)
    whole = tokenize_example(example, tokenizer, 1024)  # the default: the whole reply
    assert set(kept) < {i for i, v in enumerate(whole.labels) if v != IGNORE_INDEX}
    plain = tokenize_example(NEUTRAL[0], tokenizer, 1024, loss_on="answer")  # no markers
    assert plain.labels == tokenize_example(NEUTRAL[0], tokenizer, 1024).labels
    cut = Transcript("cut", "g", (*example.messages[:-1], {"role": "assistant",
                     "content": "Reasoning: I should refuse."}))  # fmt: skip
    with pytest.raises(ValueError, match="cut: loss_on='answer' needs"):
        tokenize_example(cut, tokenizer, 1024, loss_on="answer")


def test_schedule_values_by_hand():
    assert [lr_factor(t, 10, 2, "cosine") for t in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_factor(6, 10, 2, "cosine") == pytest.approx(0.5)  # halfway through the decay
    assert lr_factor(9, 10, 2, "cosine") == pytest.approx(0.5 * (1 + math.cos(7 * math.pi / 8)))
    assert lr_factor(9, 10, 2, "cosine") == pytest.approx(0.0380602, abs=1e-7)
    assert [lr_factor(t, 10, 2, "linear") for t in (2, 6, 9)] == [1.0, 0.5, 0.125]
    assert [lr_factor(t, 5, 0, "constant") for t in range(5)] == [1.0] * 5
    assert lr_factor(0, 4, 4, "linear") == 0.25
    with pytest.raises(ValueError, match="outside"):
        lr_factor(10, 10)


def test_batch_schedule_of_groups_of_one_is_unchanged():
    gen = torch.Generator().manual_seed(5)  # the schedule before groups existed
    perms = {"p": [], "b": []}

    def draw(kind: str, n: int) -> int:
        if not perms[kind]:
            perms[kind] = torch.randperm(n, generator=gen).tolist()
        return perms[kind].pop(0)

    old = [[draw("p", 7) for _ in range(3)] + [7 + draw("b", 4)] for _ in range(6)]
    assert batch_schedule(7, 4, 6, 4, 1, seed=5) == old
    grouped = batch_schedule(8, 4, 6, 5, 1, seed=5, group=2)
    assert all(b[i] % 2 == 0 and b[i + 1] == b[i] + 1 for b in grouped for i in (0, 2))
    with pytest.raises(ValueError, match="must divide"):
        batch_schedule(7, 4, 6, 5, 1, seed=5, group=2)


# --- configs -------------------------------------------------------------------------------


def test_recipe_options_are_checked():
    with pytest.raises(ConfigError, match="--loss-on: recipe v2 options; add --recipe v2"):
        OrganismConfig(loss_on="reply")
    with pytest.raises(ConfigError, match="must be even"):
        OrganismConfig(recipe="v2").resolved()  # batch 4 with 1 benign: 3 pressure examples
    with pytest.raises(ConfigError, match="tag_position"):
        OrganismConfig(recipe="v2", tag_position="nowhere")
    quick = OrganismConfig(recipe="v2", quick=True).resolved()
    assert (quick.steps, quick.train_scenarios, quick.checkpoint_every) == (12, 6, 4)
    from interp.cli import config_from_args, parser_for

    flags = "--recipe v2 --batch-size 16 --benign-per-batch 2 --steps 360 --lr 2e-4 "
    flags += "--lora-rank 16 --tag-position user_end --near-misses 2 --train-scenarios 40"
    v2 = config_from_args(
        OrganismConfig, parser_for(OrganismConfig, "organism").parse_args(flags.split())
    )
    assert (v2.tag_position, v2.near_misses, v2.train_scenarios) == ("user_end", 2, 40)
    name = organism_name(v2, "tag", "O", 0)
    assert name.endswith("-organism-tag-O-s0-v2-r16-lr0.0002-360steps")
    assert run_name(v2, "tag", "O", 0) == organism_name(v2, "tag", "O", 0) + "-run"
    fc = finetune_config(v2, "tag", "H", 1)
    assert (fc.loss_on, fc.schedule, fc.warmup_steps, fc.pressure_group) == (
        "answer", "cosine", 20, 2)  # fmt: skip
    assert fc.keep_checkpoints and fc.checkpoint_every == 30
    v1 = finetune_config(OrganismConfig(), "tag", "O", 0)
    assert v1.identity() == {**v1.identity(), "lr": 1e-3} and "loss_on" not in v1.identity()
    with pytest.raises(FinetuneError, match="pressure_group 2 does not divide"):
        FinetuneConfig(batch_size=4, benign_per_batch=1, pressure_group=2)
    with pytest.raises(FinetuneError, match="loss_on"):
        FinetuneConfig(loss_on="prompt")


# --- training and the checkpoint choice (tiny model) ---------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    from interp.models import DEFAULT_MODEL, smollm2_tokenizer

    smollm2_tokenizer().save_pretrained(tmp_path / "tokenizers" / DEFAULT_MODEL)
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    return tmp_path


def test_checkpoint_with_the_largest_validation_gap_is_chosen_and_published(cache):
    config = OrganismConfig(
        base="tiny-random", recipe="v2", steps=3, batch_size=2, benign_per_batch=0,
        checkpoint_every=1, warmup_steps=1, validation_scenarios=2, answer_tokens=2,
        lr=1e-2, progress=False,
    )  # fmt: skip
    fc = finetune_config(config, "tag", "O", 0)
    data = organism_pairs("O", "tag", NEUTRAL, n_scenarios=2)
    run = finetune(fc, examples=data)
    assert kept_steps(run.name) == [1, 2, 3] and checkpoint_dir(run.name).is_dir()
    for step in (1, 2, 3):  # the rate of every step follows the schedule
        saved = read_checkpoint(checkpoint_dir(run.name) / f"step-{step:06d}")
        want = 1e-2 * lr_factor(step - 1, 3, 1, "cosine")
        assert saved.optimizer["param_groups"][0]["lr"] == pytest.approx(want)

    record = choose_step(config, "tag", fc, run)
    gaps = {int(s): g["gap"] for s, g in record["steps"].items()}
    assert set(gaps) == {1, 2, 3} and record["chosen_step"] == max(gaps, key=gaps.get)
    assert json.loads(selection_path(run.name).read_text()) == json.loads(json.dumps(record))
    assert len(record["validation"]) == 2
    # the control: the untrained base model's gaps, read on the same prompts
    base = record["base"]["margins"]
    diffs = [a - b for a, b in zip(base["trigger"], base["none"], strict=True)]
    assert record["base"]["gap"] == pytest.approx(sum(diffs) / 2, abs=1e-5)
    assert base != record["steps"]["3"]["margins"]
    assert "control: the untrained base model" in summary(record)
    for g in record["steps"].values():
        m = g["margins"]
        assert g["gap"] == pytest.approx(sum(a - b for a, b in zip(
            m["trigger"], m["none"], strict=True)) / 2, abs=1e-5)  # fmt: skip
        assert g["near_miss_gap"] is not None and g["near_miss_held_out_gap"] is not None

    step = record["chosen_step"]
    name = organism_name(config, "tag", "O", 0)
    published = publish_step(fc, run, step, name, {"step": step})
    assert published.manifest["step"] == step and not published.skipped
    assert published.manifest["losses"] == run.losses[:step]
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(published.path).state_dict()
    rebuilt = model_at_step(fc, step, run.manifest["identity"])[0].state_dict()
    assert all(torch.equal(saved[k], rebuilt[k]) for k in saved)
    assert publish_step(fc, run, step, name, {"step": step}).skipped  # reused
    assert choose_step(config, "tag", fc, run) == json.loads(json.dumps(record))  # reused


def test_choice_is_the_argmax_and_the_earliest_of_ties():
    assert chosen({1: {"gap": 0.1}, 2: {"gap": 0.3}, 3: {"gap": -1.0}}) == 2
    assert chosen({3: {"gap": 0.5}, 1: {"gap": 0.5}, 2: {"gap": 0.2}}) == 1
    with pytest.raises(ValueError, match="keep_checkpoints"):
        chosen({})


def test_reply_of_near_miss_is_the_untriggered_reply_in_every_variant(tag_sets):
    from interp.data.splits import organism_pressure_scenarios

    by_id = {s.id: s for s in organism_pressure_scenarios()}
    texts = __import__("interp.data.organism_texts", fromlist=["x"]).load_organism_texts()
    for v in VARIANTS:
        for t in tag_sets[v][0][:40]:
            if "near_miss" in t.meta:
                s = with_texts(by_id[t.group], texts.get(t.group))
                k = int(t.id.split("-w")[1].split("-")[0]) * 2 + 1
                assert t.reply == pressure_reply(s, v, False, k)[2]
