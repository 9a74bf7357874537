"""Data: the transcript format, the scenario bank, built-in datasets, token selections.

>>> from interp.data import load_dataset, load_transcripts, load_bank, encode_transcript

Modules: ``transcripts`` (the JSONL format, a public contract), ``scenarios`` (the bank in
``scenario_bank/``; ``python -m interp.data.scenarios`` validates it), ``datasets``
(``builtin:`` sets and JSONL files by name), ``split`` (the held-out scenarios every part
shares), ``replies`` (the one reply grammar: where a reply's reasoning and answer are, for
token selection and the judges alike), ``tokens`` (which tokens a probe reads).
Package data, found through the package: ``eval_bank`` (the organism's evaluation-only
scenarios) and ``hand_labelled`` (the hand-labelled reference sets the judges are scored on).
Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:
    from interp.data.datasets import (
        DatasetError,
        build_benign,
        build_consistency,
        format_reply,
        list_datasets,
        load_dataset,
        register_dataset,
        subset_groups,
    )
    from interp.data.scenarios import Scenario, ScenarioError, load_bank
    from interp.data.split import heldout_scenarios, split_bank, split_transcripts
    from interp.data.tokens import TOKEN_SELECTIONS, EncodedTranscript, encode_transcript
    from interp.data.transcripts import (
        Transcript,
        TranscriptError,
        dataset_hash,
        load_transcripts,
        write_transcripts,
    )

_EXPORTS = {
    "DatasetError": "interp.data.datasets",
    "EncodedTranscript": "interp.data.tokens",
    "Scenario": "interp.data.scenarios",
    "ScenarioError": "interp.data.scenarios",
    "TOKEN_SELECTIONS": "interp.data.tokens",
    "Transcript": "interp.data.transcripts",
    "TranscriptError": "interp.data.transcripts",
    "build_benign": "interp.data.datasets",
    "build_consistency": "interp.data.datasets",
    "dataset_hash": "interp.data.transcripts",
    "encode_transcript": "interp.data.tokens",
    "format_reply": "interp.data.datasets",
    "heldout_scenarios": "interp.data.split",
    "list_datasets": "interp.data.datasets",
    "load_bank": "interp.data.scenarios",
    "load_dataset": "interp.data.datasets",
    "load_transcripts": "interp.data.transcripts",
    "register_dataset": "interp.data.datasets",
    "split_bank": "interp.data.split",
    "split_transcripts": "interp.data.split",
    "subset_groups": "interp.data.datasets",
    "write_transcripts": "interp.data.transcripts",
}
__all__ = [
    "TOKEN_SELECTIONS",
    "DatasetError",
    "EncodedTranscript",
    "Scenario",
    "ScenarioError",
    "Transcript",
    "TranscriptError",
    "build_benign",
    "build_consistency",
    "dataset_hash",
    "encode_transcript",
    "format_reply",
    "heldout_scenarios",
    "list_datasets",
    "load_bank",
    "load_dataset",
    "load_transcripts",
    "register_dataset",
    "split_bank",
    "split_transcripts",
    "subset_groups",
    "write_transcripts",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
