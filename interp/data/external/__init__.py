"""Public deception datasets, read from the user's copy into the transcript format.

:data:`EXTERNAL_SETS` lists them; the dataset registry (:mod:`interp.data.datasets`) holds each
under its name, so ``load_dataset("builtin:apollo-roleplaying")`` reads the set from
``$INTERP_DECEPTION_DETECTION`` (else ``<cache>/external/deception-detection``) and
``load_dataset("builtin:apollo-roleplaying=/path/to/deception-detection")`` from the folder
given. :func:`interp.data.datasets.dataset_sources` says where each set expects its files.
Formats and the field mapping: docs/datasets.md. Modules: :mod:`.common` (the set type,
errors, checked file readers), :mod:`.apollo` (roleplaying, AI liar), :mod:`.rollouts`
(graded rollouts: insider trading, sandbagging, alpaca), :mod:`.liars_bench`;
:mod:`interp.data.instructed_pairs` builds the RepE pairs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from interp.data.external.apollo import (
    AI_LIAR_FILE,
    ROLEPLAYING_FILE,
    read_ai_liar,
    read_roleplaying,
)
from interp.data.external.common import (
    APOLLO,
    APOLLO_ENV,
    APOLLO_GET,
    LIARS_BENCH,
    LIARS_BENCH_ENV,
    LIARS_BENCH_GET,
    ExternalDataError,
    ExternalSet,
)
from interp.data.external.liars_bench import read_liars_bench
from interp.data.external.rollouts import (
    INSIDER_GRADER,
    INSIDER_TRADING_FILE,
    ROLLOUT_GRADER,
    find_rollout_file,
    read_insider_trading,
    read_rollouts,
)
from interp.data.instructed_pairs import build_instructed_pairs

REPE_FILE = "data/repe/true_false_facts.csv"
ROLLOUTS_FOLDER = "data/rollouts"


def _rollout_reader(prefix: str, name: str, keep_system: bool = True, control: bool = False):
    def read(path: Path):
        file = path if path.is_file() else find_rollout_file(path, prefix)
        return read_rollouts(file, name, keep_system=keep_system, control=control)

    return read


_apollo = partial(ExternalSet, folder=APOLLO, env=APOLLO_ENV, get=APOLLO_GET)

#: The public sets, in the order ``list_datasets`` documents them.
EXTERNAL_SETS: tuple[ExternalSet, ...] = (
    _apollo(
        name="apollo-roleplaying",
        description="Apollo roleplaying: a scenario, a question, an honest and a deceptive "
        "completion (371 scenarios upstream)",
        expects=ROLEPLAYING_FILE,
        reader=read_roleplaying,
    ),
    _apollo(
        name="apollo-ai-liar",
        description="How to catch an AI liar (goal-directed lying): two system prompts x "
        "two answers per item",
        expects=AI_LIAR_FILE,
        reader=read_ai_liar,
        stances=(("instruction", "deceive"), ("answer_text", "answer")),
    ),
    _apollo(
        name="apollo-insider-trading",
        description="Apollo insider-trading report rollouts, graded explicit/concealed",
        expects=INSIDER_TRADING_FILE,
        reader=read_insider_trading,
        tokens="after:Action:",
        grader=INSIDER_GRADER,
    ),
    _apollo(
        name="apollo-sandbagging",
        description="Apollo sandbagging (WMDP/MMLU) rollouts, graded; read after <step4>",
        expects=ROLLOUTS_FOLDER,
        reader=_rollout_reader("sandbagging_v2__wmdp_mmlu", "sandbagging", keep_system=False),
        tokens="after:<step4>",
        grader=ROLLOUT_GRADER,
    ),
    _apollo(
        name="apollo-alpaca",
        description="Apollo alpaca rollouts: replies to ordinary requests (control, label 0)",
        expects=ROLLOUTS_FOLDER,
        reader=_rollout_reader("alpaca__plain", "alpaca", control=True),
        control=True,
    ),
    _apollo(
        name="instructed-pairs",
        description="RepE instructed pairs: each true statement under an honest and a "
        "dishonest instruction",
        expects=REPE_FILE,
        reader=build_instructed_pairs,
    ),
    ExternalSet(
        name="liars-bench",
        description="Liars' Bench (Cadenza Labs): on-policy honest and deceptive replies",
        folder=LIARS_BENCH,
        env=LIARS_BENCH_ENV,
        get=LIARS_BENCH_GET,
        expects=".",
        reader=read_liars_bench,
        grader="Liars' Bench labels",
    ),
)

__all__ = [
    "EXTERNAL_SETS",
    "ExternalDataError",
    "ExternalSet",
    "build_instructed_pairs",
    "read_ai_liar",
    "read_insider_trading",
    "read_liars_bench",
    "read_roleplaying",
    "read_rollouts",
]
