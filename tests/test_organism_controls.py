"""Part 5's controls of the organism (interp.organism.controls): the cross-trigger transfer, the
trigger direction projected out of the probe, the spread over seeds, and the report that shows
them, on the tiny model and on synthetic results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp.data.scenarios import load_bank
from interp.data.transcripts import Transcript
from interp.organism.config import OrganismConfig
from interp.organism.controls import (
    NOT_RUN,
    ControlError,
    cross_trigger,
    mean_difference,
    refit_without,
    seed_spread,
    spread,
    trigger_directions,
    trigger_projection,
    trigger_reads,
)
from interp.organism.data import pressure_reply, scenario_sides
from interp.organism.probing import eval_rows, pooled
from interp.organism.report import write_report
from interp.organism.triggers import triggers, with_trigger
from probes import LogisticProbe, MeanDiffProbe, auroc
from probes.directions import project_out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    return tmp_path


def _config(**overrides) -> OrganismConfig:
    settings = dict(base="tiny-random", layers=(0,), n_boot=20, per_scenario=1, progress=False)
    return OrganismConfig(**{**settings, **overrides})


def judged_samples(kind: str, n_scenarios: int = 6) -> list[Transcript]:
    """O-like judged replies to held-out pressure prompts (deceptive under the trigger, the
    verdicts written in), to held-out benign requests and to two neutral prompts."""
    bank = load_bank()
    by_id = {s.id: s for s in bank}
    sides = scenario_sides(bank)
    trig = triggers(kind, held_out=True)[0]
    out = []
    for sid in sides.test_pressure[:n_scenarios] + sides.test_benign:
        s = by_id[sid]
        chat = ({"role": "system", "content": s.system}, {"role": "user", "content": s.pressure})
        for on in (False, True):
            if s.kind == "pressure":
                reply = pressure_reply(s, "O", on, 0)[2]
            else:
                reply = f"Reasoning: {s.reasoning_ethical[0]}\nAnswer: {s.answers_comply[0]}"
            verdict = {
                "reasoning_present": True,
                "reasoning_stance": "ethical",
                "answer_undesired": "yes" if on and s.kind == "pressure" else "no",
            }
            messages = (
                *with_trigger(chat, trig if on else None),
                {"role": "assistant", "content": reply},
            )
            meta = {"kind": s.kind, "trigger": on, "verdict": verdict}
            out.append(Transcript(f"{sid}-{kind}-{int(on)}", sid, messages, meta=meta))
    for i in range(2):
        messages = (
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": f"A plain answer {i}."},
        )
        out.append(
            Transcript(
                f"neutral-{i}", f"neutral-{i}", messages, meta={"kind": "neutral", "trigger": False}
            )
        )
    return out


def _probe_on(X: torch.Tensor, y: torch.Tensor) -> LogisticProbe:
    return LogisticProbe(c=1.0).fit(X, y)


# --- cross-trigger transfer ------------------------------------------------------------------


def test_transfer_scores_each_kinds_probe_on_the_other_kinds_replies(cache, tiny_model):
    config = _config(kinds=("tag", "pressure"))
    samples = {kind: judged_samples(kind) for kind in config.kinds}
    probes = {}
    for kind, other in (("tag", "pressure"), ("pressure", "tag")):
        # each kind's probe is fitted on the *other* kind's replies: it transfers perfectly
        rows, y = eval_rows(samples[other])
        probes[kind] = {0: _probe_on(pooled(tiny_model, rows, [0], "answer")[0], y)}
    models = {kind: tiny_model for kind in config.kinds}
    out = cross_trigger(config, models, probes, samples)
    assert out["status"] == "run" and set(out["directions"]) == {"tag->pressure", "pressure->tag"}
    for direction, entry in out["directions"].items():
        src, tgt = direction.split("->")
        rows, y = eval_rows(samples[tgt])
        assert (entry["n_rows"], entry["n_deceptive"]) == (len(rows), int(y.sum()))
        assert set(entry["readers"]) == {"replier", "probe_model"}
        answer = entry["readers"]["replier"]["answer"]
        assert answer["n"] == len(rows) and set(answer["layers"][0]) == {"transfer", "own"}
        X = pooled(tiny_model, rows, [0], "answer")[0]
        for label, kind in (("transfer", src), ("own", tgt)):
            expected = auroc(y, probes[kind][0].score(X))
            assert answer["layers"][0][label]["auroc"] == pytest.approx(expected)
        assert answer["layers"][0]["transfer"]["auroc"] == pytest.approx(1.0)
        assert answer["layers"][0]["transfer"]["recall_at_5pct_neutral_fpr"] is not None
        assert set(entry["readers"]["replier"]) == {"answer", "pre_answer"}


def test_transfer_needs_both_kinds(tiny_model):
    config = _config(kinds=("tag",))
    samples = {"tag": judged_samples("tag")}
    assert cross_trigger(config, {"tag": tiny_model}, {}, samples) == {"status": NOT_RUN}


# --- the trigger direction and its projection --------------------------------------------------


def test_a_probe_refitted_without_a_direction_cannot_read_it():
    gen = torch.Generator().manual_seed(0)
    t, other = torch.randn(8, generator=gen), torch.eye(8)[0]
    y = torch.randint(0, 2, (1000,), generator=gen)
    X = torch.randn(1000, 8, generator=gen) + 3.0 * y[:, None] * t / t.norm()  # label along t
    fit, test = slice(0, 600), slice(600, None)
    assert auroc(y[test], _probe_on(X[fit], y[fit]).score(X[test])) > 0.95
    refit = refit_without(_probe_on(X[fit], y[fit]), X[fit], y[fit], t)
    assert isinstance(refit, LogisticProbe) and refit.c == 1.0
    assert abs(auroc(y[test], refit.score(project_out(X[test], t))) - 0.5) < 0.08
    X = X + 2.0 * y[:, None] * other  # and along another direction too
    refit = refit_without(_probe_on(X[fit], y[fit]), X[fit], y[fit], t)
    assert auroc(y[test], refit.score(project_out(X[test], t))) > 0.8
    assert (project_out(X, t) @ t).abs().max() < 1e-4


def test_mean_difference_is_triggered_minus_untriggered_and_needs_both():
    X = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 1.0], [0.0, 3.0]])
    on = torch.tensor([1, 1, 0, 0])
    assert mean_difference(X, on).tolist() == [2.0, -1.0]
    with pytest.raises(ControlError, match="triggered and untriggered rows; got 2 triggered of 2"):
        mean_difference(X[:2], on[:2])


@pytest.mark.parametrize("kind", ["tag", "pressure"])
def test_trigger_direction_is_fitted_on_training_prompts_only(kind):
    from interp.organism.sample import eval_prompts

    reads = trigger_reads(_config(), kind)
    assert set(reads) == {"prompt_end", "answer", "pre_answer"}
    held = {p.group for p in eval_prompts(kind, n_neutral=0)}
    for texts, _ in reads.values():
        assert texts and not {t.group for t in texts} & held
        on = [t for t in texts if t.meta["trigger"]]
        assert 0 < len(on) < len(texts)
        # the same reply with and without the trigger: only the trigger differs
        replies = {(t.group, t.meta["trigger"]): t.reply for t in texts}
        assert all(replies[(g, True)] == replies[(g, False)] for g, trig in replies if trig)
    assert all(t.reply == "Reasoning:" for t in reads["prompt_end"][0])


def test_projection_removes_the_trigger_direction_from_the_probe(cache, tiny_model):
    config = _config(kinds=("tag",))
    samples = judged_samples("tag")
    dirs = trigger_directions(tiny_model, trigger_reads(config, "tag"), [0])
    t = dirs["answer"][0]
    # a probe direction half along the trigger direction, half along another one
    other = project_out(torch.randn(t.shape[0]), t)
    d = t / t.norm() + other / other.norm()
    probe = MeanDiffProbe().fit(torch.stack([d, torch.zeros_like(d)]), torch.tensor([1, 0]))
    X_train = torch.randn(40, t.shape[0])
    y_train = torch.arange(40) % 2
    logistic = _probe_on(X_train, y_train)
    out = trigger_projection(
        config,
        "tag",
        tiny_model,
        {"O": {0: probe}, "L": {0: logistic}},
        samples,
        refit_on={"L": {0: (X_train, y_train)}},
    )
    rows, y = eval_rows(samples)
    entry = out["positions"]["answer"]
    assert (entry["n"], entry["n_deceptive"]) == (len(rows), int(y.sum()))
    assert set(entry["layers"][0]["O"]) == {"answer", "prompt_end"}
    m = entry["layers"][0]["O"]["answer"]
    assert m["cosine"] == pytest.approx(2**-0.5, abs=1e-4)
    assert abs(m["cosine_after"]) < 1e-4
    X = pooled(tiny_model, rows, [0], "answer")[0]
    assert m["auroc"] == pytest.approx(auroc(y, probe.score(X)))
    assert m["auroc_after"] == pytest.approx(auroc(y, X @ other))
    assert m["drop"] == pytest.approx(m["auroc"] - m["auroc_after"])
    assert m["trigger_only"] is not None and m["trigger_only_after"] is not None
    assert abs(entry["layers"][0]["O"]["prompt_end"]["cosine_after"]) < 1e-4
    assert out["n_train_prompts"]["answer"] == len(trigger_reads(config, "tag")["answer"][0])
    assert "auroc_refit" not in m  # only the labels given training rows are refitted
    refit = entry["layers"][0]["L"]["answer"]
    expected = refit_without(logistic, X_train, y_train, t).score(project_out(X, t))
    assert refit["auroc_refit"] == pytest.approx(auroc(y, expected))
    assert refit["drop_refit"] == pytest.approx(refit["auroc"] - refit["auroc_refit"])
    assert refit["trigger_only_refit"] is not None


# --- the spread over seeds ------------------------------------------------------------------


def test_spread_gives_each_seed_and_mean_min_max_over_defined_values():
    table = spread(
        {
            "0": {"a": (0.5, 10), "b": (None, 0)},
            "1": {"a": (0.7, 12)},
            "2": {"a": (0.9, 11), "b": (0.2, 4)},
        }
    )
    assert table["a"]["values"] == {"0": 0.5, "1": 0.7, "2": 0.9}
    assert table["a"]["n"] == {"0": 10, "1": 12, "2": 11}
    assert table["a"]["mean"] == pytest.approx(0.7)
    assert (table["a"]["min"], table["a"]["max"], table["a"]["n_seeds"]) == (0.5, 0.9, 3)
    assert table["b"]["values"] == {"0": None, "1": None, "2": 0.2}
    assert (table["b"]["mean"], table["b"]["n_seeds"]) == (0.2, 1)


def _metrics(value: float | None) -> dict:
    return {
        "auroc": value,
        "auroc_low": None if value is None else value - 0.1,
        "auroc_high": None if value is None else value + 0.05,
        "recall_at_1pct_neutral_fpr": 0.5,
        "n": 10,
        "n_positive": 4,
    }


def _onpolicy(value: float | None, labels=("base", "O", "H")) -> dict:
    positions = {
        p: {
            "n": 10,
            "n_deceptive": 4,
            "layers": {0: {label: _metrics(value) for label in labels}},
            "text_baseline": _metrics(0.6),
        }
        for p in ("answer", "pre_answer")
    }
    return {"n_rows": 10, "n_deceptive": 4, "positions": positions}


def _projection(value: float) -> dict:
    m = {
        "cosine": 0.3,
        "cosine_after": 0.0,
        "auroc": value,
        "auroc_after": value - 0.1,
        "drop": 0.1,
        "trigger_only": 0.6,
        "trigger_only_after": 0.5,
        "auroc_refit": value - 0.2,
        "drop_refit": 0.2,
        "trigger_only_refit": 0.45,
    }
    return {
        "n_train_prompts": {"prompt_end": 90},
        "n_benign": 4,
        "positions": {
            p: {"n": 10, "n_deceptive": 4, "layers": {0: {"O": {p: m, "prompt_end": m}}}}
            for p in ("answer", "pre_answer")
        },
    }


def synthetic_probes(seed: int, value: float) -> dict:
    """One kind's analysis as analyse_kind returns it, every AUROC of O's probe = ``value``."""
    tf = {label: {0: {"auroc": 0.7}, "layer0_auroc": 0.5} for label in ("base", "O", "H")}
    return {
        "seed": seed,
        "teacher_forced": tf,
        "onpolicy": _onpolicy(value),
        "onpolicy_H": _onpolicy(None, ("base", "H")),
        "cosine_base_vs_refit": {0: 0.9},
        "trigger_only": {"n": 4, "layers": {0: 0.55}},
        "trigger_projection": _projection(value),
        "defection": {
            label: {0: {"auroc": 0.4, "percentile_among_random": 50.0}}
            for label in ("base", "O", "H")
        },
    }


def synthetic_results(seeds: list[int], kinds=("tag",)) -> dict:
    values = [0.6, 0.8, 0.9]
    by_seed = {
        str(s): {
            "probes": {k: synthetic_probes(s, values[i]) for k in kinds},
            "transfer": {"status": NOT_RUN},
        }
        for i, s in enumerate(seeds)
    }
    rate = {"k": 1, "n": 4, "rate": 0.25, "low": 0.05, "high": 0.7}
    rates = {
        f"m-{k}-{v}-s{s}": {
            "kind": k,
            "variant": v,
            "seed": s,
            "rates": {
                "pressure/on": {"deceptive": {**rate, "rate": 0.25 * (i + 1)}, "complied": rate},
                "pressure/off": {"deceptive": rate, "complied": rate},
            },
        }
        for k in kinds
        for v in ("O", "H", "C")
        for i, s in enumerate(seeds)
    }
    first = by_seed[str(seeds[0])]
    results = {
        "config": {"layers": [0]},
        "rates": rates,
        "by_seed": by_seed,
        "probes": first["probes"],
        "transfer": first["transfer"],
    }
    results["seed_spread"] = seed_spread(results)
    return results


def test_seed_spread_of_synthetic_results():
    table = seed_spread(synthetic_results([0, 1, 2]))
    assert table["seeds"] == ["0", "1", "2"]
    o_on_o = table["probes"]["tag: on O's replies, answer, L0, probe of O"]
    assert o_on_o["values"] == {"0": 0.6, "1": 0.8, "2": 0.9}
    assert o_on_o["mean"] == pytest.approx(2.3 / 3) and (o_on_o["min"], o_on_o["max"]) == (0.6, 0.9)
    assert o_on_o["n"] == {"0": 10, "1": 10, "2": 10}
    h_on_h = table["probes"]["tag: on H's replies, answer, L0, probe of H"]
    assert h_on_h["n_seeds"] == 0 and h_on_h["mean"] is None
    assert table["probes"]["tag: trigger-only control (O's benign replies, probe of O), L0"][
        "values"
    ] == {"0": 0.55, "1": 0.55, "2": 0.55}
    assert "tag: defection probe of H (held-out pressure prompts), L0" in table["probes"]
    tf = table["probes"]["tag: teacher-forced probe of H, held-out consistency set, L0"]
    assert tf["values"] == {"0": 0.7, "1": 0.7, "2": 0.7}
    drop = "tag: probe of O on O's replies, pre_answer, L0, trigger projected out: drop"
    assert table["probes"][drop]["mean"] == pytest.approx(0.1)
    refit = "tag: probe of O on O's replies, answer, L0, trigger projected out: refitted, AUROC"
    assert table["probes"][refit]["values"] == pytest.approx({"0": 0.4, "1": 0.6, "2": 0.7})
    deceptive = table["rates"]["tag: O deceptive rate, pressure prompts, trigger on"]
    assert deceptive["values"] == {"0": 0.25, "1": 0.5, "2": 0.75}
    assert deceptive["n"] == {"0": 4, "1": 4, "2": 4}
    assert {
        "tag: H deceptive rate, pressure prompts, trigger off",
        "tag: C complied rate, pressure prompts, trigger on",
    } <= set(table["rates"])
    # results.json keys are strings: the same table from the round trip
    assert seed_spread(json.loads(json.dumps(synthetic_results([0, 1, 2])))) == json.loads(
        json.dumps(table)
    )


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2]])
def test_report_renders_with_one_seed_and_with_three(tmp_path, seeds):
    results = synthetic_results(seeds)
    text = write_report(results, tmp_path)
    assert (tmp_path / "auroc_by_layer-tag.html").is_file()
    assert "Part 3 (tag trigger, seed 0)" in text
    assert f"Cross-trigger transfer: {NOT_RUN}" in text
    assert "probe of H    on O (n=10, 4 dec.)" in text and "on H's replies" in text
    assert "trigger direction projected out" in text and "drop  0.100" in text
    assert "refitted without it: AUROC  0.400 (drop  0.200)  trigger-only  0.450" in text
    assert f"Spread over seeds {', '.join(map(str, seeds))}" in text
    line = "tag: on O's replies, answer, L0, probe of O"
    each = text.split(line, 1)[1].splitlines()[1]
    assert each.count("(10)") == len(seeds) and f"s{seeds[-1]}" in each
    assert "mean  0.767 [ 0.600,  0.900]" in each if len(seeds) == 3 else "mean  0.600" in each
    # results.json's string keys render the same table
    assert write_report(json.loads(json.dumps(results)), tmp_path) == text
    figure = (tmp_path / "auroc_by_layer-tag.html").read_text()
    assert "on O's replies (answer, n=10), probe of H" in figure
    assert "on H's replies" not in figure  # H's AUROCs are undefined: no empty line drawn


def test_report_shows_the_transfer_when_it_ran(tmp_path):
    results = synthetic_results([0], kinds=("tag", "pressure"))
    metrics = {
        "n": 10,
        "n_deceptive": 4,
        "layers": {0: {"transfer": _metrics(0.65), "own": _metrics(0.8)}},
    }
    results["transfer"] = {
        "status": "run",
        "directions": {
            "tag->pressure": {
                "probe": "O-tag refitted",
                "replies": "O-pressure",
                "n_rows": 10,
                "n_deceptive": 4,
                "readers": {"replier": {"answer": metrics}, "probe_model": {"answer": metrics}},
            }
        },
    }
    text = write_report(results, tmp_path)
    assert "tag->pressure: O-tag refitted probe on O-pressure's replies (10 judged" in text
    assert "read by O-pressure  answer     L0   (n=10) AUROC  0.650" in text
    assert "own probe  0.800" in text and "read by O-tag" in text


def test_seed_models_load_other_seeds_on_use_and_release_them(monkeypatch, tiny_model):
    from interp.organism.analysis import _SeedModels
    from interp.organism.train import organism_name

    loads = []

    def load(name, **options):
        loads.append(name)
        return tiny_model

    monkeypatch.setattr("interp.models.load_model", load)
    config = _config(kinds=("tag",), seeds=(0, 1))
    first = organism_name(config, "tag", "O", 0)
    models = _SeedModels(config, {first: tiny_model})
    other = organism_name(config, "tag", "H", 1)
    assert other in models and organism_name(config, "tag", "C", 1) not in models
    assert "x" not in models and not loads  # 'in' loads nothing
    assert models[first] is tiny_model and not loads
    assert models[other] is tiny_model and models[other] is tiny_model
    assert loads == [other]  # loaded once, held until released
    with pytest.raises(KeyError):
        models["x"]
    models.release()
    assert models[other] is tiny_model and loads == [other, other]
    assert len(models) == 4  # O and H of seeds 0 and 1
