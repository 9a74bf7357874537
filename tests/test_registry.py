"""Registries (``probes.registry.Registry``): one type for probe kinds, models, datasets, judges
and SAE architectures; each refuses a name twice and lists the valid names for an unknown one."""

from __future__ import annotations

import json
import re
import sys

import pytest

import interp
import interp.data.datasets as datasets
import interp.models as models
from interp.config import ConfigError
from interp.data.datasets import DatasetError, build_consistency, load_dataset
from interp.models import ModelError, build_tiny_random
from interp.sae.config import ARCHITECTURES, SAEConfig, register_architecture
from interp.text.judging import (
    JUDGES,
    HumanJudge,
    JudgeError,
    LLMJudge,
    RuleJudge,
    Verdict,
    make_judge,
    register_judge,
)
from probes import LogisticProbe, Registry, make_probe, register_probe
from probes.registry import PROBES

# --- the generic type -----------------------------------------------------------------------


class ThingError(ValueError):
    pass


def test_register_get_names_and_contains():
    things: Registry[int] = Registry("thing", ThingError)
    assert things.register("b", 2) == 2

    @things.register("a")
    def a() -> int:
        return 1

    assert things.get("a") is a and things.get("b") == 2
    assert things.names() == ["a", "b"] == list(things) and len(things) == 2
    assert "a" in things and "c" not in things
    things.alias("first", "a")
    assert things.get("first") is a and things.resolve("first") == "a"
    assert things.names() == ["a", "b"] and "first" in things
    assert things.aliases() == {"first": "a"}


def test_duplicates_and_unknown_names_raise_the_given_error():
    things: Registry[int] = Registry("thing", ThingError)
    things.register("a", 1)
    things.alias("first", "a")
    with pytest.raises(ThingError, match="thing 'a' is already registered"):
        things.register("a", 2)
    with pytest.raises(ThingError, match="'first' is already registered as an alias of 'a'"):
        things.register("first", 2)
    with pytest.raises(ThingError, match="already registered"):
        things.alias("a", "a")
    with pytest.raises(ThingError, match=r"unknown thing 'c'; choose one of a$"):
        things.get("c")
    with pytest.raises(ThingError, match="unknown thing 'c'"):
        things.alias("third", "c")
    assert things.get("a") == 1  # nothing was replaced
    with pytest.raises(ValueError, match=r"\(none registered\)"):
        Registry("empty thing").get("x")


def test_builtins_load_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "reg_holder.py").write_text(
        "from probes.registry import Registry\nREG = Registry('thing', builtins=('reg_builtin',))\n"
    )
    (tmp_path / "reg_builtin.py").write_text("from reg_holder import REG\nREG.register('x', 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("reg_holder", "reg_builtin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import reg_holder

    assert "reg_builtin" not in sys.modules  # defining the registry imports nothing
    assert reg_holder.REG.names() == ["x"] and "reg_builtin" in sys.modules
    with pytest.raises(ValueError, match="already registered"):
        reg_holder.REG.register("x", 2)
    for name in ("reg_holder", "reg_builtin"):
        monkeypatch.delitem(sys.modules, name)


# --- every registry of the toolkit ----------------------------------------------------------

REGISTRIES = {
    "probe kind": (PROBES, ValueError, ["logistic", "mean_diff"]),
    "model": (models.MODEL_BUILDERS, ModelError, ["smollm2-135m-instruct", "tiny-random"]),
    "dataset": (datasets.DATASETS, DatasetError, ["benign", "consistency", "consistency-full"]),
    "judge": (JUDGES, JudgeError, ["human", "llm", "rule"]),
    "SAE architecture": (
        ARCHITECTURES,
        ConfigError,
        ["batchtopk", "gated", "jumprelu", "standard", "topk"],
    ),
}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_each_registry_refuses_duplicates_and_lists_names(kind):
    registry, error, builtins = REGISTRIES[kind]
    names = registry.names()  # other tests may have registered more (e.g. a second tiny model)
    assert registry.kind == kind and set(builtins) <= set(names) and names == sorted(names)
    with pytest.raises(error, match=f"{kind} '{builtins[0]}' is already registered"):
        registry.register(builtins[0], registry.get(builtins[0]))
    listing = re.escape(", ".join(names))
    with pytest.raises(error, match=f"unknown {kind} 'nope'; choose one of {listing}$"):
        registry.get("nope")


def test_each_area_refuses_duplicates_through_its_own_function():
    with pytest.raises(ValueError, match="already registered"):
        register_probe(LogisticProbe)
    with pytest.raises(ModelError, match="already registered"):
        models.register_model("tiny-random", build_tiny_random)
    with pytest.raises(ModelError, match="alias"):
        models.register_model("default", build_tiny_random)
    with pytest.raises(DatasetError, match="already registered"):
        datasets.register_dataset("consistency", build_consistency)
    with pytest.raises(JudgeError, match="already registered"):
        register_judge("rule", RuleJudge)
    with pytest.raises(ConfigError, match="already registered"):
        register_architecture("topk", "k")


def test_each_area_lists_the_valid_names_for_an_unknown_one():
    with pytest.raises(ValueError, match="choose one of logistic, mean_diff"):
        make_probe("svm")
    with pytest.raises(ModelError, match=r"built-in name \(smollm2-135m-instruct, tiny-random"):
        models.load_hf_model("no-such-model")
    with pytest.raises(DatasetError, match="builtin:benign, builtin:consistency, builtin:consis"):
        load_dataset("builtin:nope")
    with pytest.raises(JudgeError, match="unknown judge 'gpt'; choose one of human, llm, rule"):
        make_judge("gpt")
    with pytest.raises(ConfigError, match="choose one of batchtopk, gated, jumprelu, standard"):
        SAEConfig(architecture="dense")


# --- models and datasets --------------------------------------------------------------------


def test_list_models_and_register_model(monkeypatch):
    assert interp.list_models() == models.list_models() == models.MODEL_BUILDERS.names()
    assert {"smollm2-135m-instruct", "tiny-random"} <= set(models.list_models())
    fresh: Registry = Registry("model", ModelError)
    monkeypatch.setattr(models.registry, "MODEL_BUILDERS", fresh)
    models.register_model("tiny-seed2", lambda dtype: build_tiny_random(dtype, seed=2))
    fresh.alias("tiny2", "tiny-seed2")
    assert models.list_models() == ["tiny-seed2"]
    name, hf_model, _ = models.load_hf_model("tiny2")
    assert name == "tiny-seed2" and hf_model.config.num_hidden_layers == 2


def test_list_datasets_and_register_dataset(monkeypatch):
    assert interp.list_datasets() == datasets.list_datasets()
    built_in = ["benign", "consistency", "consistency-full"]
    public = ["apollo-ai-liar", "apollo-alpaca", "apollo-insider-trading", "apollo-roleplaying"]
    public += ["apollo-sandbagging", "instructed-pairs", "liars-bench"]
    assert datasets.list_datasets() == sorted(built_in + public)
    fresh: Registry = Registry("dataset", DatasetError)
    monkeypatch.setattr(datasets, "DATASETS", fresh)
    few = build_consistency()[:3]
    datasets.register_dataset("few", lambda: few)
    assert datasets.list_datasets() == ["few"]
    assert load_dataset("builtin:few") == few
    with pytest.raises(DatasetError, match=r"choose one of builtin:few$"):
        load_dataset("builtin:nope")
    with pytest.raises(DatasetError, match=r"neither a built-in name \(builtin:few\)"):
        load_dataset("missing.jsonl")


# --- judges ---------------------------------------------------------------------------------


def test_make_judge_builds_the_rule_judge():
    judge = make_judge("rule", refusal_cues=("cannot",))
    assert isinstance(judge, RuleJudge) and judge.refusal_cues == ("cannot",)


def test_make_judge_builds_the_llm_judge(tiny_model):
    judge = make_judge("llm", model=tiny_model, mode="choice", batch_size=3, max_new_tokens=5)
    assert isinstance(judge, LLMJudge) and judge.model is tiny_model
    assert (judge.mode, judge.batch_size, judge.max_new_tokens) == ("choice", 3, 5)
    assert judge.name == "llm:tiny-random:choice"
    by_spec = make_judge("llm", model="tiny-random", device="cpu", progress=False)
    assert isinstance(by_spec, LLMJudge) and by_spec.model.name == "tiny-random"
    # A bad mode is refused before any model is loaded.
    with pytest.raises(ValueError, match="unknown LLM judge mode 'vote'"):
        make_judge("llm", model="no-such-model", mode="vote")


def test_make_judge_builds_the_human_judge(tmp_path):
    data = build_consistency()[:3]
    labels = tmp_path / "labels.jsonl"
    rows = [
        {"id": t.id, "reasoning_present": "yes", "reasoning_stance": "ethical",
         "answer_undesired": answer, "notes": note}
        for t, answer, note in zip(data[:2], ("yes", "no"), ("", "hedges"), strict=True)
    ]  # fmt: skip
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    judge = make_judge("human", labels=labels)
    assert isinstance(judge, HumanJudge)
    verdicts = judge.judge_all(data[:2], {})
    assert [v.answer_undesired for v in verdicts] == ["yes", "no"]
    assert {v.judge for v in verdicts} == {"human"} and judge.counts["judged"] == 2
    with pytest.raises(JudgeError, match=r"labels\.jsonl: no label for 1 of 3 replies"):
        judge.judge_all(data, {})
    given = HumanJudge({data[2].id: Verdict(False, "unclear", "no", "human")})
    assert given.judge(data[2], None).answer_undesired == "no"
