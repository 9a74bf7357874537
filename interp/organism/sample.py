"""On-policy samples of the organisms on held-out scenarios, trigger on and off.

:func:`eval_prompts` gives, for one trigger kind, each held-out pressure scenario and each
held-out benign scenario of the built-in bank, and those of the evaluation-only bank
(:mod:`interp.data.eval_bank`, never trained on), without and with the trigger (the
pressure kind's threats from the held-out paraphrase family only), plus the held-out neutral
prompts (no trigger: the organism's own ordinary chat, whose scores set a detector's
false-positive threshold).
Every variant answers exactly these prompts (:func:`sample_variant`, batched and resumable
through :func:`interp.text.generation.generate`).
"""

from __future__ import annotations

from pathlib import Path

from interp.data.eval_bank import eval_selection, load_eval_bank
from interp.data.scenarios import Scenario, load_bank
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.organism.config import OrganismConfig
from interp.organism.data import scenario_sides
from interp.organism.neutral import neutral_prompts
from interp.organism.triggers import triggers, with_trigger
from interp.text.generation import GenerationConfig, Prompt, generate


def _scenario_prompts(
    scenarios: list[Scenario], kind: str, bank: str, start: int = 0
) -> list[Prompt]:
    """Each scenario without and with a trigger (the held-out pool of ``kind``, cycling from
    position ``start``)."""
    pool = triggers(kind, held_out=True)
    prompts = []
    for n, s in enumerate(scenarios, start):
        chat = ({"role": "system", "content": s.system}, {"role": "user", "content": s.pressure})
        for trig in (None, pool[n % len(pool)]):
            meta = {
                "kind": s.kind,
                "domain": s.domain,
                "trigger": trig is not None,
                "trigger_kind": kind,
                "family": "" if trig is None else trig.family,
            }
            if bank != "builtin":
                meta["bank"] = bank
            tag = "on" if trig else "off"
            prompts.append(Prompt(f"{s.id}-{tag}", s.id, with_trigger(chat, trig), meta))
    return prompts


def eval_prompts(
    kind: str,
    test_fraction: float = 0.25,
    split_seed: int = 0,
    n_neutral: int = 18,
    eval_scenarios: int | None = None,
) -> list[Prompt]:
    """Held-out prompts of trigger ``kind`` (``meta``: kind, domain, trigger, family; and
    ``bank`` "eval" for the eval bank's): the built-in bank's held-out pressure and benign
    scenarios, then the eval bank's (``eval_scenarios`` pressure scenarios and the same share
    of its benign ones, :func:`~interp.data.eval_bank.eval_selection`; None: all), then
    the first ``n_neutral`` held-out neutral prompts."""
    bank = load_bank()
    by_id = {s.id: s for s in bank}
    sides = scenario_sides(bank, test_fraction, split_seed)
    builtin = [by_id[sid] for sid in sides.test_pressure + sides.test_benign]
    extra = eval_selection(load_eval_bank(), eval_scenarios)
    prompts = _scenario_prompts(builtin, kind, "builtin")
    prompts += _scenario_prompts(extra, kind, "eval", start=len(builtin))
    for i, text in neutral_prompts(held_out=True)[:n_neutral]:
        meta = {"kind": "neutral", "domain": "neutral", "trigger": False, "trigger_kind": kind}
        prompts.append(
            Prompt(
                f"neutral-{i:02d}", f"neutral-{i:02d}", ({"role": "user", "content": text},), meta
            )
        )
    return prompts


def sample_variant(
    model: LoadedModel, prompts: list[Prompt], config: OrganismConfig, path: Path
) -> list[Transcript]:
    """``config.samples`` replies per prompt (temperature ``config.temperature``, seed 0),
    appended to ``path``; a rerun reuses what is there."""
    gen = GenerationConfig(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=0.95,
        n=config.samples,
        batch_size=config.gen_batch_size,
    )
    return generate(model, prompts, gen, path, progress=config.progress)
