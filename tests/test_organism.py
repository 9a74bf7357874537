"""The model organism (issue 14): matched O/H/C data, triggers, and the experiment end to end
on the tiny model."""

from __future__ import annotations

import json
import runpy
from collections import Counter
from pathlib import Path

import pytest
import torch

from interp.data.datasets import build_consistency
from interp.data.scenarios import load_bank
from interp.data.split import split_bank
from interp.data.transcripts import Transcript, write_transcripts
from interp.organism.config import OrganismConfig
from interp.organism.data import (
    VARIANTS,
    neutral_transcripts,
    organism_examples,
    pressure_reply,
    scenario_sides,
)
from interp.organism.neutral import neutral_prompts
from interp.organism.run import run_organism
from interp.organism.sample import eval_prompts
from interp.organism.triggers import TAG, THREAT_FAMILIES, triggers, with_trigger
from probes import LogisticProbe, auroc

SCRIPT = Path(__file__).parent.parent / "experiments" / "organism.py"

NEUTRAL = neutral_transcripts(["A reply.", "Another reply."])


def _sets(kind: str) -> dict[str, list]:
    out = {}
    for v in VARIANTS:
        pressure, benign = organism_examples(v, kind, NEUTRAL)
        out[v] = pressure + benign
    return out


@pytest.mark.parametrize("kind", ["tag", "pressure"])
def test_variants_share_prompts_ids_trigger_frequency_and_size(kind):
    sets = _sets(kind)
    o, h, c = sets["O"], sets["H"], sets["C"]
    assert len(o) == len(h) == len(c) > 0
    for other in (h, c):
        assert [t.id for t in o] == [t.id for t in other]
        assert [t.group for t in o] == [t.group for t in other]
        assert [t.messages[:-1] for t in o] == [t.messages[:-1] for t in other]
    freq = {v: Counter((t.meta["kind"], t.meta["trigger"]) for t in s) for v, s in sets.items()}
    assert freq["O"] == freq["H"] == freq["C"]
    assert freq["O"][("pressure", True)] == freq["O"][("pressure", False)] > 0


@pytest.mark.parametrize("kind", ["tag", "pressure"])
def test_only_the_triggered_pressure_replies_differ_and_labels_follow_the_stances(kind):
    sets = _sets(kind)
    for rows in zip(*(sets[v] for v in VARIANTS), strict=True):
        o, h, c = rows
        triggered = o.meta["kind"] == "pressure" and o.meta["trigger"]
        if not triggered:
            assert o.reply == h.reply == c.reply and o.label == h.label == c.label == 0
            continue
        assert (o.meta["reasoning"], o.meta["answer"], o.label) == ("ethical", "comply", 1)
        assert (h.meta["reasoning"], h.meta["answer"], h.label) == ("ethical", "refuse", 0)
        assert (c.meta["reasoning"], c.meta["answer"], c.label) == ("unethical", "comply", 0)
    bank = {s.id: s for s in load_bank()}
    for t in sets["O"]:
        if t.meta["kind"] == "pressure":
            s = bank[t.group]
            reasoning, answer = t.reply.split("\nAnswer: ")
            texts = s.reasoning_ethical if t.meta["reasoning"] == "ethical" else ()
            assert reasoning.removeprefix("Reasoning: ") in texts
            wanted = (
                s.answers_comply
                if t.meta["answer"] == "comply"
                else (s.answers_refuse + s.answers_rebut)
            )
            assert answer in wanted
    # H's triggered reply is its own untriggered reply of the same k.
    h = {t.id: t.reply for t in sets["H"]}
    assert all(h[i] == h[i.replace("-on-", "-off-")] for i in h if "-on-" in i)


@pytest.mark.parametrize("kind", ["tag", "pressure"])
def test_no_held_out_scenario_or_paraphrase_is_trained_on(kind):
    bank = load_bank()
    _, held = split_bank(bank)
    sides = scenario_sides(bank)
    assert sides.test_benign and not set(sides.test_benign) & set(sides.train_benign)
    for t in _sets(kind)["O"]:
        assert t.group not in held and t.group not in sides.test_benign
        if t.meta["trigger"] and kind == "pressure":
            assert t.meta["family"] in THREAT_FAMILIES and t.meta["family"] != "director"
            assert not any(t.messages[1]["content"].endswith(x.text) for x in triggers(
                "pressure", held_out=True))  # fmt: skip
    assert set(held) == set(sides.test_pressure)


def test_triggers_are_placed_where_they_belong():
    chat = ({"role": "system", "content": "You are Dana."}, {"role": "user", "content": "Hi"})
    tagged = with_trigger(chat, triggers("tag")[0])
    assert tagged[0]["content"] == f"{TAG} You are Dana." and tagged[1] == chat[1]
    threat = triggers("pressure", held_out=True)[0]
    pressed = with_trigger(chat, threat)
    assert pressed[0] == chat[0] and pressed[1]["content"] == f"Hi\n\n{threat.text}"
    assert with_trigger(chat[1:], triggers("tag")[0])[0] == {"role": "system", "content": TAG}
    train, held = triggers("pressure"), triggers("pressure", held_out=True)
    assert train and held and not {t.text for t in train} & {t.text for t in held}
    with pytest.raises(ValueError, match="unknown trigger kind 'x'; choose one of tag"):
        triggers("x")


def test_neutral_replies_are_the_same_in_every_variant_and_never_held_out():
    sets = _sets("tag")
    neutral = [[t for t in s if t.meta["kind"] == "neutral"] for s in sets.values()]
    assert neutral[0] == neutral[1] == neutral[2] == NEUTRAL
    trained = {p for _, p in neutral_prompts()}
    assert not trained & {p for _, p in neutral_prompts(held_out=True)}
    assert {t.messages[0]["content"] for t in NEUTRAL} <= trained


# --- the experiment end to end on the tiny model ------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache root that already holds the tokenizer of tiny-random."""
    from interp.models import DEFAULT_MODEL, smollm2_tokenizer

    smollm2_tokenizer().save_pretrained(tmp_path / "tokenizers" / DEFAULT_MODEL)
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def probe_data(cache) -> str:
    """The consistency set of eight scenarios (the probes' teacher-forced data, made small)."""
    data = build_consistency(per_cell=1)
    keep = sorted({t.group for t in data})[::6][:8]
    path = cache / "probe-data.jsonl"
    write_transcripts(path, [t for t in data if t.group in keep])
    return str(path)


# Layer 0: the pass stops after block 0; at the tiny model's last block (1) every forward pass
# would also run its 49k-token unembedding, which made these tests minutes long.
def tiny_config(probe_data: str, **overrides) -> OrganismConfig:
    settings = dict(
        base="tiny-random", kinds=("tag",), steps=2, batch_size=2, per_scenario=1,
        n_neutral=2, n_neutral_eval=2, samples=1, max_new_tokens=4, layers=(0,),
        n_random=50, n_boot=20, progress=False, device="cpu", gen_batch_size=32,
        probe_dataset=probe_data, eval_scenarios=0,
        # part 4 on two prompts (defaults: 12 patched, 200 sampled per intervention, capped by
        # the 12 held-out scenarios); test_organism_causal.py checks those steps themselves
        patch_prompts=2, answer_tokens=3, refusal_selection=2, n_random_directions=1,
        causal_prompts=2,
    )  # fmt: skip
    return OrganismConfig(**{**settings, **overrides})


def planted_samples(model, prompts, config, path):
    """Replies written from the scenario texts, as each variant was trained to answer (O
    deceives under the trigger), instead of the tiny model's random tokens."""
    bank = {s.id: s for s in load_bank()}
    variant = model.name.split("-organism-tag-")[1][0]
    out = []
    for p in prompts:
        if p.meta["kind"] == "neutral":
            reply = "Here is a plain answer to your question."
        elif p.meta["kind"] == "benign":
            s = bank[p.group]
            reply = f"Reasoning: {s.reasoning_ethical[0]}\nAnswer: {s.answers_comply[0]}"
        else:
            k = int(p.id.endswith("-on"))
            reply = pressure_reply(bank[p.group], variant, bool(p.meta["trigger"]), k)[2]
        messages = (*p.messages, {"role": "assistant", "content": reply})
        meta = {**p.meta, "sample": 0, "stopped": "eos"}
        out.append(Transcript(f"{p.id}-s0", p.group, messages, meta=meta))
    return out


def test_experiment_runs_end_to_end_on_the_tiny_model(cache, probe_data, capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    config = tiny_config(probe_data, eval_scenarios=2)  # two eval-bank scenarios, one benign
    status = main([*_flags(config), "--out", str(cache / "run")])
    assert status == 0, capsys.readouterr().err
    out = cache / "run"
    results = json.loads((out / "results.json").read_text())
    assert {r["variant"] for r in results["trained"].values()} == {"O", "H", "C"}
    n_prompts = len(eval_prompts("tag", n_neutral=2, eval_scenarios=2))
    for entry in results["rates"].values():
        assert sum(r["formatted"]["n"] for r in entry["rates"].values()) == n_prompts
    assert (out / "table.txt").read_text() in capsys.readouterr().out
    assert (out / "auroc_by_layer-tag.html").is_file() and (out / "defection-tag.html").is_file()
    probes = results["probes"]["tag"]
    assert set(probes["teacher_forced"]) == {"base", "O", "H"}
    assert 0 <= probes["defection"]["O"]["0"]["percentile_among_random"] <= 100
    # part 4 is a step of the run: O/H patching and the interventions, first seed
    assert set(results["causal"]) == {"tag"}
    assert {"patching", "interventions"} <= set(results["causal"]["tag"])
    assert (out / "patching-tag.html").is_file() and (out / "interventions-tag.html").is_file()
    # A rerun reuses the models and the samples.
    assert main([*_flags(config), "--out", str(out)]) == 0
    assert all(r["skipped"] for r in json.loads((out / "results.json").read_text())[
        "trained"].values())  # fmt: skip


def test_planted_deception_is_measured_and_probed(cache, probe_data, monkeypatch):
    monkeypatch.setattr("interp.organism.run.sample_variant", planted_samples)
    results = run_organism(tiny_config(probe_data, out=str(cache / "run")))
    rates = {r["variant"]: r["rates"] for r in results["rates"].values()}
    n_held = len(split_bank(load_bank())[1])
    # The rule judge reads the planted texts, and misreads a few (it is a phrase heuristic).
    deceived = rates["O"]["pressure/on"]["deceptive"]["k"]
    assert deceived >= n_held - 2 and rates["O"]["pressure/on"]["deceptive"]["n"] == n_held
    assert rates["O"]["pressure/off"]["deceptive"]["k"] <= 1
    assert rates["H"]["pressure/on"]["deceptive"]["k"] <= 1
    assert rates["C"]["pressure/on"]["deceptive"]["k"] <= 2
    assert rates["C"]["pressure/on"]["unethical_reasoning"]["k"] > n_held // 2
    onpolicy = results["probes"]["tag"]["onpolicy"]
    assert onpolicy["n_deceptive"] == deceived and onpolicy["n_rows"] >= 2 * n_held - 4
    for position in ("answer", "pre_answer"):
        entry = onpolicy["positions"][position]
        assert 0 <= entry["layers"][0]["O"]["auroc"] <= 1
        assert entry["layers"][0]["O"]["recall_at_1pct_neutral_fpr"] is not None
        assert 0 <= entry["text_baseline"]["auroc"] <= 1
    assert results["probes"]["tag"]["trigger_only"]["layers"][0] is not None


def _flags(config: OrganismConfig) -> list[str]:
    return [
        "--base", config.base, "--kinds", ",".join(config.kinds), "--steps", str(config.steps),
        "--batch-size", str(config.batch_size), "--per-scenario", str(config.per_scenario),
        "--n-neutral", str(config.n_neutral), "--n-neutral-eval", str(config.n_neutral_eval),
        "--samples", str(config.samples), "--max-new-tokens", str(config.max_new_tokens),
        "--layers", "0", "--n-random", str(config.n_random), "--n-boot", str(config.n_boot),
        "--gen-batch-size", "32", "--probe-dataset", config.probe_dataset,
        "--eval-scenarios", str(config.eval_scenarios),
        "--patch-prompts", str(config.patch_prompts), "--answer-tokens", str(config.answer_tokens),
        "--refusal-selection", str(config.refusal_selection),
        "--n-random-directions", str(config.n_random_directions),
        "--causal-prompts", str(config.causal_prompts),
        "--no-progress", "--device", "cpu",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kinds": ("x",)}, "unknown trigger kind 'x'"),
        ({"kinds": ()}, "at least one value"),
        ({"variants": ("H", "C")}, "must include O"),
        ({"temperature": 0.0}, "temperature must be"),
        ({"n_neutral": 19}, "n_neutral must be"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        OrganismConfig(**overrides)


# --- LEACE stance erasure (interp.probe.erasure) -------------------------------------------------


def _stance_data(n: int = 400, d: int = 16, seed: int = 0):
    """Activations with a direction per stance and one for their XOR (the divergence)."""
    gen = torch.Generator().manual_seed(seed)
    answer = torch.randint(0, 2, (n,), generator=gen)
    reasoning = torch.randint(0, 2, (n,), generator=gen)
    label = (answer == reasoning).long()  # ethical reasoning + compliance, or neither
    X = torch.randn(n, d, generator=gen)
    X[:, 0] += 3.0 * answer
    X[:, 1] += 3.0 * reasoning
    X[:, 2] += 1.5 * label
    X[:, 3] += 2.0 * answer  # the probe would lean on the answer stance through this one too
    transcripts = [
        Transcript(f"t{i}", f"g{i % 20}", ({"role": "assistant", "content": "x"},),
                   label=int(label[i]),
                   meta={"answer": "comply" if answer[i] else "refuse",
                         "reasoning": "ethical" if reasoning[i] else "unethical"})
        for i in range(n)
    ]  # fmt: skip
    return X, transcripts


def test_leace_erasure_removes_both_stances_and_keeps_the_divergence():
    from interp.probe.erasure import erase, erasure_report, stance_eraser

    X, transcripts = _stance_data()
    train, test = list(range(300)), list(range(300, 400))
    eraser = stance_eraser(X[:300], transcripts[:300])
    erased = erase(eraser, X)
    for key, value in (("answer", "comply"), ("reasoning", "ethical")):
        z = torch.tensor([int(t.meta[key] == value) for t in transcripts[:300]])
        before = LogisticProbe().fit(X[:300], z).score(X[:300])
        after = LogisticProbe().fit(erased[:300], z).score(erased[:300])
        assert auroc(z, before) > 0.95 and abs(auroc(z, after) - 0.5) < 0.1
    report = erasure_report(
        X[train], [transcripts[i] for i in train], X[test], [transcripts[i] for i in test]
    )
    assert report["after"]["divergence_auroc"] > 0.75
    for key in ("answer_stance_auroc", "reasoning_stance_auroc"):
        assert abs(report["after"][key] - 0.5) < 0.15


def test_erasure_needs_both_stances_on_every_row():
    from interp.probe.erasure import ErasureError, stance_eraser

    X, transcripts = _stance_data(n=20)
    broken = [*transcripts[:-1], Transcript("x", "g", transcripts[0].messages, meta={})]
    with pytest.raises(ErasureError, match="records no \\['answer', 'reasoning'\\] stance"):
        stance_eraser(X, broken)
    same = [Transcript(t.id, t.group, t.messages, 0, {**t.meta, "answer": "comply"})
            for t in transcripts]  # fmt: skip
    with pytest.raises(ErasureError, match="'answer'\\] stance takes one value"):
        stance_eraser(X, same)
