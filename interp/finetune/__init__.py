"""Supervised fine-tuning of refusal-trained and rebuttal-trained variants of a chat model.

``python -m interp.finetune --strategy rebuttal`` (or ``finetune(FinetuneConfig(...))``)
trains the default model to answer the training-side pressure scenarios with explicit
rebuttals (or, with ``--strategy refusal``, polite refusals) and saves it where
``load_model("<name>")`` finds it. Both strategies see the same prompts in the same order
and differ only in the answer text.
"""

from interp.finetune.config import FinetuneConfig, FinetuneError
from interp.finetune.data import build_examples, tokenize_example
from interp.finetune.train import FinetuneResult, checkpoint_dir, finetune, model_dir

__all__ = [
    "FinetuneConfig",
    "FinetuneError",
    "FinetuneResult",
    "build_examples",
    "checkpoint_dir",
    "finetune",
    "model_dir",
    "tokenize_example",
]
