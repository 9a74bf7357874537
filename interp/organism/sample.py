"""On-policy samples of the organisms on held-out scenarios, trigger on and off.

:func:`eval_prompts` gives, for one trigger kind, each held-out pressure scenario and each
held-out benign scenario without and with the trigger (the pressure kind's threats from the
held-out paraphrase family only), plus the held-out neutral prompts (no trigger: the
organism's own ordinary chat, whose scores set a detector's false-positive threshold).
Every variant answers exactly these prompts (:func:`sample_variant`, batched and resumable
through :func:`interp.text.generation.generate`).
"""

from __future__ import annotations

from pathlib import Path

from interp.data.scenarios import load_bank
from interp.data.transcripts import Transcript
from interp.models import LoadedModel
from interp.organism.config import OrganismConfig
from interp.organism.data import scenario_sides
from interp.organism.neutral import neutral_prompts
from interp.organism.triggers import triggers, with_trigger
from interp.text.generation import GenerationConfig, Prompt, generate


def eval_prompts(
    kind: str, test_fraction: float = 0.25, split_seed: int = 0, n_neutral: int = 18
) -> list[Prompt]:
    """Held-out prompts of trigger ``kind`` (``meta``: kind, domain, trigger, family), then
    the first ``n_neutral`` held-out neutral prompts."""
    bank = load_bank()
    by_id = {s.id: s for s in bank}
    sides = scenario_sides(bank, test_fraction, split_seed)
    pool = triggers(kind, held_out=True)
    prompts = []
    for n, sid in enumerate(sides.test_pressure + sides.test_benign):
        s = by_id[sid]
        chat = ({"role": "system", "content": s.system}, {"role": "user", "content": s.pressure})
        for trig in (None, pool[n % len(pool)]):
            meta = {
                "kind": s.kind,
                "domain": s.domain,
                "trigger": trig is not None,
                "trigger_kind": kind,
                "family": "" if trig is None else trig.family,
            }
            tag = "on" if trig else "off"
            prompts.append(Prompt(f"{sid}-{tag}", sid, with_trigger(chat, trig), meta))
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
