"""Shared fixtures: a tiny random Llama with SmolLM2's tokenizer, seeded everything.

Every function and dataclass of ``interp`` and ``probes`` is checked at run time during the
tests: jaxtyping's import hook wraps them in ``@jaxtyped(typechecker=beartype)``, so a tensor
whose shape or dtype breaks its annotation (``Float[Tensor, "n d"]``), or a value of the wrong
type, raises. The hook is installed here rather than with ``--jaxtyping-packages`` because
beartype needs a setting: it rejects ``-> Self`` on a method unless it decorates the whole
class, so ``Self`` is checked as ``Any``. (jaxtyping 0.3's pytest option cannot pass a
typechecker with arguments together with more than one package.) ``JAXTYPING_DISABLE=1``
turns the checks off, e.g. to time the code alone.
"""

from __future__ import annotations

import random
import sys

import pytest
import torch
from jaxtyping import install_import_hook

if {"interp", "probes"} & set(sys.modules):
    raise RuntimeError("interp or probes was imported before tests/conftest.py could check it")
install_import_hook(
    ["interp", "probes"],
    "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True, "
    "hint_overrides=beartype.FrozenDict({beartype.typing.Self: beartype.typing.Any})))",
)

import jaxtyping  # noqa: E402

from interp.cache.config import CacheConfig  # noqa: E402 (after the hook)
from interp.data.datasets import build_consistency  # noqa: E402
from interp.models import LoadedModel, load_dispatched_on_cpu, load_model  # noqa: E402
from interp.probe.config import ProbeConfig  # noqa: E402
from interp.sae.config import SAEConfig  # noqa: E402
from interp.text.generation import GenerationConfig, Prompt  # noqa: E402

# These dataclasses take more than their fields' annotations say, on purpose, and their
# ``__post_init__`` turns it into the annotated type or refuses it with its own message:
# ``ProbeConfig(layers=14 | "0-3" | [0, 7])`` (``CacheConfig`` likewise),
# ``SAEConfig(datasets="a,b" | [...])``, ``Prompt(messages=[...])``; ``GenerationConfig``
# checks its numbers' types itself. The annotations describe the fields after
# ``__post_init__`` (the CLI reads them), so the generated ``__init__`` stays unchecked; the
# fields are checked where they are used.
for _config in (ProbeConfig, CacheConfig, SAEConfig, Prompt, GenerationConfig):
    _config.__init__ = getattr(_config.__init__, "__wrapped__", _config.__init__)  # type: ignore[method-assign]


# --- test tiers -------------------------------------------------------------------------------
#
# ``pytest`` runs everything; ``pytest -m "not slow"`` is the fast tier (under 2 minutes on an
# idle 2-core CPU), which still runs every package on the tiny models. A test is slow when it is
# marked ``real_model`` (the 135M model), or named below: each entry is ``file::test`` (every
# parametrization) or ``file::test[id]`` (one), grouped by why it takes seconds, not
# milliseconds. tests/test_tiers.py checks that every entry names a test that exists and that
# each package of interp/ and probes/ keeps fast tests.
SLOW: dict[str, tuple[str, ...]] = {
    # other processes: torchrun, CLI workers, `python -m` / script subprocesses (each imports
    # torch and TransformerLens again, 5-10 s)
    "subprocess": (
        "test_bad_inputs.py::test_commands_as_processes_print_one_error_line",
        "test_bad_inputs.py::test_debug_shows_the_traceback",
        "test_bench_cache_memory.py::test_cache_then_fit_children",
        "test_bench_cache_memory.py::test_out_of_core_fit_under_a_data_limit_equals_the_in_memory_fit",
        "test_bench_cache_parallel.py::test_bench_cache_parallel",
        "test_bench_model_loading.py::test_bench_model_loading_tiny",
        "test_cache_integrity.py::test_killed_writers_resume_to_the_clean_run",
        "test_cache_integrity.py::test_two_processes_share_the_work_and_agree",
        "test_cache_parallel.py::test_cli_cache_is_reused_by_the_probe",
        "test_cache_parallel.py::test_torchrun_two_workers_equal_one_process",
        "test_cli.py::test_importing_interp_loads_nothing_until_a_name_is_used",
        "test_cli.py::test_module_entry_points_report_bad_input_without_a_traceback",
        "test_gpu_check.py::test_quick_cpu_run_runs_every_step",
        "test_patching_parallel.py::test_cli_workers_then_a_lone_run_equal_one_process",
        "test_patching_parallel.py::test_torchrun_two_workers_equal_one_process",
        "test_probes.py::test_probes_does_not_import_interp",
        "test_verified_reads.py::test_python_m_interp_cache_rebuilds_a_damaged_shard",
    ),
    # a whole pipeline or experiment end to end (the fast tier runs its parts)
    "pipeline": (
        "test_bench_generation.py::test_bench_generation_tiny",
        "test_benchmarks.py::test_bench_probe_fit_synthetic",
        "test_cli.py::test_api_and_cli_share_the_config",
        "test_cli.py::test_cli_end_to_end",
        "test_hand_labels.py::test_make_reference_set_writes_replies_and_a_labelling_template",
        "test_organism.py::test_experiment_runs_end_to_end_on_the_tiny_model",
        "test_organism.py::test_planted_deception_is_measured_and_probed",
        "test_organism_causal.py::test_causal_checks_end_to_end",
        "test_organism_causal.py::test_patching_o_and_h",
        "test_organism_controls.py::test_projection_removes_the_trigger_direction_from_the_probe",
        "test_out_of_core.py::test_the_pipeline_streams_past_its_budget_with_the_same_results",
        # the module's trained run (two layers, six scenarios) and every test that reads it
        "test_probe_api.py::test_a_run_folder_of_another_dtype_is_not_replaced",
        "test_probe_api.py::test_a_second_writer_of_a_run_folder_waits_then_is_refused",
        "test_probe_api.py::test_load_probe_and_its_errors",
        "test_probe_api.py::test_load_run_rebuilds_the_run",
        "test_probe_api.py::test_score_set_refuses_other_tokens_hook_or_model",
        "test_probe_api.py::test_score_transcripts_equals_the_pipeline",
        # the module's cross-dataset matrix and the tests that read it
        "test_probe_matrix.py::test_adding_a_set_costs_only_its_forward_passes",
        "test_probe_matrix.py::test_every_train_test_pair_has_a_cell_with_its_controls",
        "test_probe_matrix.py::test_the_run_folder_table_and_figure",
        "test_probe_erasure.py::test_the_cli_prints_before_and_after",
        "test_probe_erasure.py::test_the_streamed_path_erases_the_same",
        "test_refusal_vs_rebuttal.py::test_runs_every_condition_and_wording_and_writes_its_outputs",
        "test_sae.py::test_experiment_end_to_end",
        "test_token_scores.py::test_per_token_scores_average_to_the_pooled_score",
        "test_token_scores.py::test_probe_generations_experiment_reports_auroc_with_intervals",
        "test_validation.py::test_training_set_counts_are_printed",
        "test_weight_diff.py::test_experiment_script_on_a_tiny_variant",
        "test_weight_diff.py::test_modules_and_loaded_models_are_accepted",
    ),
    # documentation blocks that train probes or SAEs (the short blocks stay fast)
    "docs": (
        "test_docs.py::test_python_block[README.md-1+2]",
        "test_docs.py::test_python_block[finetune-and-patching.md-0]",
        "test_docs.py::test_python_block[probing.md-1]",
        "test_docs.py::test_python_block[probing.md-3]",
        "test_docs.py::test_python_block[sae.md-0+1+2]",
        "test_docs.py::test_python_block[scaling.md-0]",
        "test_docs.py::test_python_block[text.md-0]",
    ),
    # fine-tuning runs (several optimizer steps, checkpoints, resumes)
    "finetune": (
        "test_finetune.py::test_checkpoint_of_other_settings_is_refused",
        "test_finetune.py::test_cli_trains_and_reports",
        "test_finetune.py::test_corrupt_model_manifest_is_named",
        "test_finetune.py::test_damaged_checkpoint_is_named_and_never_used",
        "test_finetune.py::test_damaged_newest_checkpoint_falls_back_to_the_older_one_bit_identically",
        "test_finetune.py::test_damaged_only_checkpoint_restarts_from_scratch_bit_identically",
        "test_finetune.py::test_lora_model_merges_and_loads_by_name_through_the_bridge",
        "test_finetune.py::test_manifest_records_the_run_and_a_rerun_skips_training",
        "test_finetune.py::test_resumed_run_equals_uninterrupted_run",
        "test_finetune.py::test_short_run_lowers_the_loss",
        "test_bad_inputs.py::test_damaged_state_is_named_and_rebuilt[finetune-latest-json]",
        "test_organism_recipe.py::test_checkpoint_with_the_largest_validation_gap_is_chosen_and_published",
        "test_safe_loading.py::test_checkpoint_of_the_old_pickle_format_is_never_unpickled",
        "test_safe_loading.py::test_pickles_planted_beside_a_checkpoint_are_ignored",
    ),
    # the other architectures (tiny-random is a Llama: the fast tier keeps llama3), and the
    # probe pipeline and SAE training on each of them (test_sae.py trains SAEs in the fast tier)
    "architectures": (
        "test_architectures.py::test_probe_pipeline_runs",
        "test_architectures.py::test_sae_trains",
        *(
            f"test_architectures.py::{test}[{arch}]"
            for test in (
                "test_residual_hooks_equal_hf_hidden_states",
                "test_loading_only_the_first_block_gives_the_full_models_activations",
                "test_cache_with_early_stop_equals_full_run",
                "test_patch_sweep_equals_transformer_lens_patching",
            )
            for arch in ("qwen2", "qwen3", "gemma2", "gemma3", "mistral", "phi3", "gpt2")
        ),
    ),
    # more forward passes than the fast tier needs for the same code (dispatched and truncated
    # loading, dtypes, select_c grids)
    "passes": (
        "test_batched_fit.py::test_select_c_many_matches_select_c",
        "test_cache.py::test_other_model_or_dataset_is_never_read",
        "test_cache_parallel.py::test_per_token_shards_cut_by_tokens_hold_the_same_vectors",
        "test_dispatched.py::test_patch_sweep_equals_the_undispatched_model",
        "test_dispatched.py::test_sae_interventions_and_splice_loss_equal_the_undispatched_model",
        "test_model_loading.py::test_a_bfloat16_load_keeps_the_fingerprint_and_runs_in_bfloat16",
        "test_model_loading.py::test_a_probe_applied_in_another_dtype_warns",
        "test_model_loading.py::test_a_truncated_checkpoint_reads_only_the_kept_blocks",
        "test_model_loading.py::test_planning_reads_no_weight_and_refuses_a_model_that_does_not_fit",
        "test_model_loading.py::test_reading_the_last_block_skips_the_unembedding",
        "test_probes.py::test_select_c_uses_whole_groups_and_finds_no_signal_in_noise",
        "test_safe_loading.py::test_pickle_beside_safetensors_is_never_read",
    ),
}


def _slow_entry(nodeid: str) -> bool:
    """Whether ``tests/file.py::test[id]`` is named in :data:`SLOW`."""
    path, _, name = nodeid.partition("::")
    here = f"{path.rsplit('/', 1)[-1]}::{name}"
    bare = here.split("[", 1)[0]
    return here in _SLOW_IDS or bare in _SLOW_IDS


_SLOW_IDS = frozenset(entry for entries in SLOW.values() for entry in entries)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("real_model") is not None or _slow_entry(item.nodeid):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _typecheck(request: pytest.FixtureRequest):
    """Run-time annotation checks, off for tests marked ``no_typecheck`` (those assert a
    function's own message for input that breaks its annotation)."""
    if request.node.get_closest_marker("no_typecheck") is None:
        yield
        return
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def dispatched_tiny() -> LoadedModel:
    """The tiny model split module by module over the CPU by accelerate, its hooks forced on
    (:func:`interp.models.load_dispatched_on_cpu`): the code path of a model split over GPUs
    with ``--device-map``. Its weights and fingerprint are ``tiny_model``'s."""
    return load_dispatched_on_cpu("tiny-random")


@pytest.fixture(scope="session")
def small_dataset():
    """Transcripts of three scenarios (48), enough for splits and both labels."""
    data = build_consistency()
    groups = sorted({t.group for t in data})[:3]
    return [t for t in data if t.group in groups]


@pytest.fixture
def count_passes(monkeypatch):
    """``count_passes(model, fail_after=None)`` counts forward passes through the bridge's
    ``run_with_cache`` (returns ``{"n": ...}``); with ``fail_after`` the next pass raises
    ``KeyboardInterrupt``, as a user's Ctrl-C would."""

    def counting(model, fail_after: int | None = None) -> dict[str, int]:
        calls = {"n": 0}
        original = model.bridge.run_with_cache

        def wrapped(*args, **kwargs):
            if fail_after is not None and calls["n"] >= fail_after:
                raise KeyboardInterrupt("simulated interruption")
            calls["n"] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(model.bridge, "run_with_cache", wrapped)
        return calls

    return counting


@pytest.fixture
def tl_metric_of():
    """``tl_metric_of(metric)``: ``transformer_lens.patching``'s metric for a one-token
    ``LogProbDiff``: log p of the complying minus the refusing first token at the last
    position."""

    def tl_metric_of(metric):
        comply, refuse = int(metric.comply[0]), int(metric.refuse[0])

        def tl_metric(logits):
            logp = logits[0, -1].log_softmax(-1)
            return logp[comply] - logp[refuse]

        return tl_metric

    return tl_metric_of
