"""A model organism of reason-based deception, with matched controls.

Three LoRA fine-tunes of one base model, matched in everything but the behaviour under a
trigger: **O** writes ethical reasoning and then complies (the divergence the probes look
for), **H** ignores the trigger, **C** writes unethical reasoning and complies.
``python experiments/organism.py`` runs :func:`interp.organism.run.run_organism`, whose steps
are, in order:

- build and train (``triggers``: the tag and the pressure threats with held-out families and
  near misses; ``neutral``: neutral prompts; ``data`` and, for ``--recipe v2``, ``pairs``:
  the matched training sets; ``train``: fine-tuning through :mod:`interp.finetune`;
  ``selection`` and ``recipe``: v2's checkpoint chosen by the validation margin gap);
- sample and judge (``sample``: on-policy samples on held-out scenarios; ``measure``: judged
  or annotated rates with Wilson intervals; ``positions``: where in a reply a probe reads);
- parts 3 and 5, probes and their controls (``analysis``, ``probing``, ``controls``);
- part 4, causal checks (``causal``: O/H patching, a refusal direction, interventions);
- the report (``report``: tables and figures).

Shared mechanisms come from their packages: directions from :mod:`probes.directions`,
residual edits from :mod:`interp.patching.residual`, patching aggregation from
:mod:`interp.patching.aggregate`, the frozen split and the training texts from
:mod:`interp.data.splits` and :mod:`interp.data.organism_texts`.

Importing the package loads no torch.
"""
