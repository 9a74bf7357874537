"""Fine-tuning the organisms through :func:`interp.finetune.finetune` (LoRA, resumable).

Every variant of one trigger kind and seed gets the same :class:`~interp.finetune.FinetuneConfig`
(steps, batch size, learning rate, LoRA rank, seed, split) and data of the same size and
order (:func:`interp.organism.data.organism_examples`); only the triggered replies differ.
Models are saved under ``<cache>/models/<name>/`` (:func:`organism_name`) and a rerun with
the same settings reuses them; an interrupted run resumes from its checkpoint.

Recipe v2 (``config.recipe``) trains on :func:`interp.organism.pairs.organism_pairs` with the
answer-only loss, warm-up and decay, matched pairs kept in one batch (``pressure_group=2``)
and every checkpoint kept, under :func:`run_name`; :mod:`interp.organism.recipe` then publishes
the chosen step under :func:`organism_name`.
"""

from __future__ import annotations

from pathlib import Path

from interp.data.scenarios import load_bank
from interp.data.splits import organism_split
from interp.data.transcripts import Transcript
from interp.finetune import FinetuneConfig, FinetuneResult, finetune
from interp.models import LoadedModel
from interp.organism.config import OrganismConfig
from interp.organism.data import neutral_transcripts, organism_examples
from interp.organism.neutral import neutral_prompts
from interp.organism.pairs import organism_pairs


def organism_name(config: OrganismConfig, kind: str, variant: str, seed: int) -> str:
    """``<base>-organism-<kind>-<variant>-s<seed>-<steps>steps`` (recipe v2, the chosen
    checkpoint: ``...-s<seed>-v2-r<rank>-lr<lr>-<steps>steps``, so runs of a rank or rate sweep
    have their own folders): other settings of the same name are refused by
    :func:`interp.finetune.finetune`, never silently reused."""
    base = Path(config.base.rstrip("/")).name
    recipe = f"-v2-r{config.lora_rank}-lr{config.lr:g}" if config.recipe == "v2" else ""
    return f"{base}-organism-{kind}-{variant}-s{seed}{recipe}-{config.steps}steps"


def run_name(config: OrganismConfig, kind: str, variant: str, seed: int) -> str:
    """The fine-tune's own folder: :func:`organism_name` for recipe v1; for v2, that name
    with ``-run`` (the last step's model, every checkpoint in ``<run>.checkpoint/``)."""
    name = organism_name(config, kind, variant, seed)
    return f"{name}-run" if config.recipe == "v2" else name


def finetune_config(config: OrganismConfig, kind: str, variant: str, seed: int) -> FinetuneConfig:
    v2 = config.recipe == "v2"
    recipe: dict = (
        dict(loss_on=config.loss_on, schedule=config.schedule, warmup_steps=config.warmup_steps,
             pressure_group=2, keep_checkpoints=True)
        if v2 else {}
    )  # fmt: skip
    return FinetuneConfig(
        base=config.base,
        name=run_name(config, kind, variant, seed),
        method="lora",
        steps=config.steps,
        batch_size=config.batch_size,
        benign_per_batch=config.benign_per_batch,
        lr=config.lr,
        seed=seed,
        lora_rank=config.lora_rank,
        lora_alpha=2.0 * config.lora_rank,
        test_fraction=config.test_fraction,
        split_seed=config.split_seed,
        checkpoint_every=config.checkpoint_every if v2 else 10,
        device=config.device,
        progress=config.progress,
        **recipe,
    )


def base_neutral(model: LoadedModel, config: OrganismConfig, out_dir: Path) -> list[Transcript]:
    """The base model's greedy replies (at most 64 tokens) to the first ``n_neutral``
    training neutral prompts, as transcripts (cached in ``out_dir/neutral-base.jsonl``;
    generation resumes)."""
    from interp.text.generation import GenerationConfig, Prompt, generate

    prompts = [
        Prompt(f"neutral-{i:02d}", f"neutral-{i:02d}", ({"role": "user", "content": p},))
        for i, p in neutral_prompts(held_out=False)[: config.n_neutral]
    ]
    if not prompts:
        return []
    # batch size fixed (not gen_batch_size), so a rerun with other sampling settings reuses the file
    gen = GenerationConfig(max_new_tokens=min(64, config.max_new_tokens), batch_size=8)
    samples = generate(model, prompts, gen, out_dir / "neutral-base.jsonl", config.progress)
    return neutral_transcripts([t.reply for t in samples])


def train_organism(
    config: OrganismConfig, kind: str, variant: str, seed: int, neutral: list[Transcript]
) -> FinetuneResult:
    """Fine-tune (or reuse) one variant (recipe v2: its run, every checkpoint kept)."""
    if config.recipe == "v2":
        examples = organism_pairs(
            variant, kind, neutral,
            position=config.tag_position, near_miss=config.near_misses,
            n_scenarios=config.train_scenarios,
            test_fraction=config.test_fraction, split_seed=config.split_seed,
        )  # fmt: skip
        split = organism_split()
        trained = sorted({t.group for t in examples[0]})
        sides = {"train_scenarios": trained, "validation_scenarios": list(split.validation),
                 "test_scenarios": list(split.test)}  # fmt: skip
        return finetune(finetune_config(config, kind, variant, seed), None, examples, sides)
    examples = organism_examples(
        variant,
        kind,
        neutral,
        per_scenario=config.per_scenario,
        test_fraction=config.test_fraction,
        split_seed=config.split_seed,
        bank=load_bank(),
    )
    return finetune(finetune_config(config, kind, variant, seed), examples=examples)
