"""Tiny random-weight models of common architectures, built offline from transformers configs.

This module holds their transformers configs (:data:`CONFIGS`, :func:`tiny_config`): a
2-layer model (hidden 64, 4 heads, 2 KV heads where the architecture has them, intermediate
128) whose vocabulary is SmolLM2's tokenizer's. :func:`interp.models.registry.build_tiny` builds
one with seeded random weights and that tokenizer (it lives there, beside the tokenizer, so
this module imports nothing of the toolkit). Nothing is downloaded.
:mod:`interp.models.registry` registers them as ``tiny-random-<arch>``
(``tiny-random-llama3``, ``tiny-random-qwen2``, ``tiny-random-qwen3``, ``tiny-random-gemma2``,
``tiny-random-gemma3``, ``tiny-random-mistral``, ``tiny-random-phi3``, ``tiny-random-gpt2``),
so ``--model tiny-random-qwen3`` works wherever a model name is taken.

The weights say nothing about language: these models exist to check that hooks, caching,
probes, patching and SAEs work on each architecture (tests/test_architectures.py,
docs/architectures.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Shapes shared by every tiny model.
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
INTERMEDIATE = 128
HEAD_DIM = HIDDEN // HEADS
#: Gemma-2/3's sliding window, shorter than the test prompts so that it masks something.
SLIDING_WINDOW = 4


def _token_ids(tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _decoder_shapes() -> dict[str, Any]:
    """The keyword arguments every Llama-like config takes."""
    return {
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 4096,
    }


def _llama3(tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 1024,
    }
    return LlamaConfig(
        **_decoder_shapes(), **_token_ids(tokenizer), rope_parameters=rope, tie_word_embeddings=True
    )


def _qwen2(tokenizer: Any) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(**_decoder_shapes(), **_token_ids(tokenizer), tie_word_embeddings=True)


def _qwen3(tokenizer: Any) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        **_decoder_shapes(), **_token_ids(tokenizer), head_dim=HEAD_DIM, tie_word_embeddings=True
    )


def _mistral(tokenizer: Any) -> Any:
    from transformers import MistralConfig

    return MistralConfig(**_decoder_shapes(), **_token_ids(tokenizer), sliding_window=None)


def _gemma2(tokenizer: Any) -> Any:
    from transformers import Gemma2Config

    return Gemma2Config(
        **_decoder_shapes(),
        **_token_ids(tokenizer),
        head_dim=HEAD_DIM,
        query_pre_attn_scalar=HEAD_DIM,
        sliding_window=SLIDING_WINDOW,
        # caps small enough to act on random weights' small scores and logits
        attn_logit_softcapping=1.0,
        final_logit_softcapping=0.5,
    )


def _gemma3(tokenizer: Any) -> Any:
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        **_decoder_shapes(),
        **_token_ids(tokenizer),
        head_dim=HEAD_DIM,
        query_pre_attn_scalar=HEAD_DIM,
        sliding_window=SLIDING_WINDOW,
        layer_types=["sliding_attention", "full_attention"],
    )


def _phi3(tokenizer: Any) -> Any:
    from transformers import Phi3Config

    return Phi3Config(**_decoder_shapes(), **_token_ids(tokenizer))


def _gpt2(tokenizer: Any) -> Any:
    from transformers import GPT2Config

    ids = _token_ids(tokenizer)
    return GPT2Config(
        vocab_size=ids["vocab_size"],
        bos_token_id=ids["bos_token_id"],
        eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=INTERMEDIATE,
        n_positions=4096,
    )


#: Config makers by architecture name; the model class comes from the config.
CONFIGS: dict[str, Callable[[Any], Any]] = {
    "llama3": _llama3,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma2": _gemma2,
    "gemma3": _gemma3,
    "mistral": _mistral,
    "phi3": _phi3,
    "gpt2": _gpt2,
}


def tiny_config(arch: str, tokenizer: Any) -> Any:
    """The transformers config of the tiny ``arch`` model (see :data:`CONFIGS`)."""
    if arch not in CONFIGS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {', '.join(CONFIGS)}")
    return CONFIGS[arch](tokenizer)
