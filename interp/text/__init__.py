"""Reason-based deception in text: generating replies and judging them.

>>> from interp.text import GenerationConfig, Prompt, generate
>>> from interp.text.judging import RuleJudge, apply_verdicts

:func:`generate` samples replies with the hooked model (batched, resumable); ``judging`` splits
replies into reasoning and answer and grades them (rule, LLM and human judges);
``python -m interp.text.judge`` is its command line. Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:
    from interp.text.generation import GenerationConfig, GenerationError, Prompt, generate

_EXPORTS = {
    "GenerationConfig": "interp.text.generation",
    "GenerationError": "interp.text.generation",
    "Prompt": "interp.text.generation",
    "generate": "interp.text.generation",
}
__all__ = [
    "GenerationConfig",
    "GenerationError",
    "Prompt",
    "generate",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
