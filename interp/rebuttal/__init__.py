"""The refusal-vs-rebuttal study: does training a model to answer pressure with a polite
refusal hide the behaviour that an explicit rebuttal removes?

Three parts, each with a thin command in ``experiments/``:

- the text-level follow-up protocol (:mod:`interp.text.followup`,
  ``experiments/refusal_vs_rebuttal.py``): the model's next reply after a fixed refusal, a
  fixed rebuttal or its own reply, judged;
- :mod:`interp.rebuttal.finetune` (``experiments/finetune_refusal_vs_rebuttal.py``): a
  refusal-trained and a rebuttal-trained variant, their loss curves, sample replies and probe
  AUROCs per layer;
- :mod:`interp.rebuttal.patching` (``experiments/patch_refusal_vs_rebuttal.py``): activation
  patching between the two replies in context and between the two fine-tuned models, averaged
  over scenarios with :func:`interp.patching.aggregate.average_patches`.

Importing the package loads no torch.
"""
