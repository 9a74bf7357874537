"""A model organism of reason-based deception (issue 14), with matched controls.

Three LoRA fine-tunes of one base model, matched in everything but the behaviour under a
trigger: **O** writes ethical reasoning and then complies (the divergence the probes look
for), **H** ignores the trigger, **C** writes unethical reasoning and complies. Modules:
``triggers`` (the tag and the pressure threats, with held-out paraphrase families),
``neutral`` (neutral prompts), ``data`` (the matched training sets), ``train`` (fine-tuning
through :mod:`interp.finetune`), ``sample`` (on-policy samples on held-out scenarios),
``measure`` (judged rates with Wilson intervals), ``probing`` (probes on the organism's own
generations). ``python experiments/organism.py`` runs it all. Recipe v2 (issue 19):
``pairs`` (matched pairs with near misses over the frozen split's train side), ``selection``
(the checkpoint chosen by the validation margin gap), ``recipe`` (``--recipe v2``: train and
choose).

Importing the package loads no torch.
"""
