"""Checksums on the artefacts the toolkit writes and later trusts (issue 20, point 3).

Each saved artefact records the size and BLAKE2b checksum of its files in its manifest and
(where the manifest is JSON the reader trusts) the checksum of its own contents; a reader
refuses a file whose bytes changed after it was written, naming the file and the fix. These
tests damage an artefact in a way that keeps its structure (a flipped bit in a float, an
edited field, a file copied from another run), which the structural checks let through.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from interp.artifacts import record_checksums, seal
from probes import LogisticProbe, Probe, ProbeMeta, ProbeMismatchError
from probes.io import UncheckedArtifactWarning

HOOK = "blocks.1.hook_resid_post"


def _fitted(seed: int = 0) -> LogisticProbe:
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 8, generator=generator)
    y = torch.tensor([0, 1] * 20)
    X[y == 1] += 1.0
    probe = LogisticProbe(c=1.0)
    probe.meta = ProbeMeta("tiny", "fp", HOOK, "answer")
    return probe.fit(X, y)


def _flip_bit(path: Path, offset_from_end: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01  # a low bit of a float: still finite, still parses
    path.write_bytes(bytes(data))


def _edit_json(path: Path, change, reseal: bool = False) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(seal(data) if reseal else data))


# --- probes ---------------------------------------------------------------------------------


def test_a_saved_probe_records_the_checksums_of_its_files_and_contents(tmp_path):
    folder = _fitted().save(tmp_path / "p")
    config = json.loads((folder / "probe.json").read_text())
    assert set(config["files"]) == {"probe.safetensors"}
    assert len(config["blake2b"]) == 64
    loaded = Probe.load(folder)
    assert torch.equal(loaded.direction, _fitted().direction)


def test_a_flipped_bit_in_the_tensors_is_refused_naming_the_file(tmp_path):
    folder = _fitted().save(tmp_path / "p")
    _flip_bit(folder / "probe.safetensors")
    with pytest.raises(ProbeMismatchError) as info:
        Probe.load(folder)
    text = str(info.value)
    assert f"{folder / 'probe.safetensors'}: checksum differs" in text
    assert "re-save the probe" in text


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["meta"].update(tokens="reply"),
        lambda c: c["meta"].update(hook="blocks.0.hook_resid_post"),
        lambda c: c.update(threshold=0.25),
    ],
    ids=["tokens", "hook", "threshold"],
)
def test_an_edited_probe_json_is_refused(tmp_path, change):
    folder = _fitted().save(tmp_path / "p")
    _edit_json(folder / "probe.json", change)
    with pytest.raises(ProbeMismatchError, match=r"probe\.json: its contents do not match"):
        Probe.load(folder)


def test_a_probe_saved_without_checksums_loads_with_a_warning(tmp_path):
    folder = _fitted().save(tmp_path / "p")
    _edit_json(folder / "probe.json", lambda c: [c.pop("files"), c.pop("blake2b")])
    with pytest.warns(UncheckedArtifactWarning, match=r"saved without checksums.*re-save"):
        Probe.load(folder)


def test_a_probe_json_with_half_its_checksums_is_refused(tmp_path):
    folder = _fitted().save(tmp_path / "p")
    _edit_json(folder / "probe.json", lambda c: c.pop("files"))
    with pytest.raises(ProbeMismatchError, match=r"lacks \['files'\]"):
        Probe.load(folder)


# --- erasers --------------------------------------------------------------------------------


def _erased(folder: Path, seed: int = 0) -> Path:
    from concept_erasure import LeaceFitter

    from interp.probe.erased_probe import ErasedProbe

    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 8, generator=generator, dtype=torch.float64)
    Z = torch.randint(0, 2, (40, 2), generator=generator).double()
    fitter = LeaceFitter(8, 2, dtype=torch.float64)
    fitter.update(X, Z)
    return ErasedProbe(_fitted(seed), fitter.eraser).save(folder)


def _load(folder: Path) -> Probe:
    from interp.probe.erased_probe import with_saved_eraser

    return with_saved_eraser(Probe.load(folder), folder)


def test_an_erased_probe_records_its_eraser_and_loads_with_it(tmp_path):
    from interp.probe.erased_probe import ErasedProbe
    from interp.probe.results import load_probe, probe_dir

    folder = _erased(probe_dir(tmp_path, 1))
    config = json.loads((folder / "probe.json").read_text())
    assert set(config["files"]) == {"probe.safetensors", "eraser.safetensors"}
    assert isinstance(load_probe(tmp_path, 1), ErasedProbe)


def test_removing_the_eraser_from_probe_json_is_refused(tmp_path):
    folder = _erased(tmp_path / "p")
    _edit_json(folder / "probe.json", lambda c: c["meta"]["extra"].pop("stance_eraser"))
    with pytest.raises(ProbeMismatchError, match="its contents do not match"):
        _load(folder)
    # even re-sealed (edited by a tool that knows the format), the eraser is not ignored
    _edit_json(folder / "probe.json", lambda c: None, reseal=True)
    with pytest.raises(ProbeMismatchError) as info:
        _load(folder)
    assert "holds eraser.safetensors but probe.json names no stance eraser" in str(info.value)
    assert str(folder) in str(info.value) and "train it again" in str(info.value)


def test_an_eraser_beside_a_probe_that_does_not_name_it_is_refused(tmp_path):
    folder = _fitted().save(tmp_path / "p")
    shutil.copy(_erased(tmp_path / "other") / "eraser.safetensors", folder)
    with pytest.raises(ProbeMismatchError, match="names no stance eraser"):
        _load(folder)


def test_an_eraser_copied_from_another_run_is_refused(tmp_path):
    folder = _erased(tmp_path / "a", seed=0)
    other = _erased(tmp_path / "b", seed=1)
    shutil.copy(other / "eraser.safetensors", folder / "eraser.safetensors")
    with pytest.raises(ProbeMismatchError, match=r"eraser\.safetensors: checksum differs"):
        _load(folder)
    # with probe.json's record rewritten to match, the eraser still names its own probe
    files = record_checksums(folder, ["probe.safetensors", "eraser.safetensors"])
    _edit_json(folder / "probe.json", lambda c: c.update(files=files), reseal=True)
    with pytest.raises(ProbeMismatchError, match="belongs to another probe or run"):
        _load(folder)


def test_an_eraser_of_another_dtype_is_refused_naming_the_file(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = _erased(tmp_path / "p")
    path = folder / "eraser.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k).half() for k in list(f.keys())}
        info = f.metadata()
    save_file(tensors, str(path), metadata=info)
    files = record_checksums(folder, ["probe.safetensors", "eraser.safetensors"])
    _edit_json(folder / "probe.json", lambda c: c.update(files=files), reseal=True)
    with pytest.raises(ProbeMismatchError) as info:
        _load(folder)
    text = str(info.value)
    assert f"in {path} is torch.float16" in text and "expected torch.float64" in text
    assert "train it again" in text


def test_score_transcripts_refuses_another_model_before_caching(
    tiny_model, small_dataset, tmp_path
):
    from interp.probe.score import score_transcripts

    probe = _fitted()  # made for model fingerprint "fp", not the tiny model's
    with pytest.raises(ProbeMismatchError, match="model_fingerprint='fp'"):
        score_transcripts(tiny_model, probe, small_dataset[:4], cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before any forward pass


# --- patching parts -------------------------------------------------------------------------


def _part_sweep(model):
    from interp.patching import LogProbDiff, PatchInput, Sweep

    tok = model.tokenizer
    target = PatchInput(tok("Please sell the old car today.", return_tensors="pt").input_ids[0])
    source = PatchInput(tok("Please hide the old car today.", return_tensors="pt").input_ids[0])
    metric = LogProbDiff.from_text(tok, "Sure, here it is", "I can't")
    return Sweep(model, target, metric, source_input=source, sites=("resid_pre",), layers=(0,))


def test_a_patching_part_with_edited_values_is_refused(tiny_model, tmp_path):
    from interp.patching import PatchError
    from interp.patching.parallel import merge_parts, run_part
    from interp.workers import WorkerSplit

    sweep = _part_sweep(tiny_model)
    run_part(sweep, tmp_path, WorkerSplit(0, 1))
    path = tmp_path / "part-0-of-1.json"
    part = json.loads(path.read_text())
    assert len(part["blake2b"]) == 64
    part["values"][0][0] = -80.4
    path.write_text(json.dumps(part))
    with pytest.raises(PatchError) as info:
        merge_parts(sweep, tmp_path)
    text = str(info.value)
    assert f"{path}: its contents do not match the checksum" in text
    assert "delete it; the next run of the sweep computes its passes again" in text


def test_a_truncated_patching_part_names_the_file_and_the_fix(tiny_model, tmp_path):
    from interp.patching import PatchError
    from interp.patching.parallel import merge_parts, run_part
    from interp.workers import WorkerSplit

    sweep = _part_sweep(tiny_model)
    run_part(sweep, tmp_path, WorkerSplit(0, 1))
    path = tmp_path / "part-0-of-1.json"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(PatchError, match=rf"{path}: not valid JSON .*; delete it; the next run"):
        merge_parts(sweep, tmp_path)


def test_an_edited_patching_result_is_refused(tiny_model, tmp_path):
    from interp.patching import PatchResult, patch_sweep

    sweep = _part_sweep(tiny_model)
    result = patch_sweep(
        tiny_model, sweep.target_input, sweep.metric, source_input=sweep.source_input,
        sites=("resid_pre",), layers=(0,), progress=False,
    )  # fmt: skip
    path = result.save(tmp_path)
    assert torch.equal(PatchResult.load(path).values, result.values)
    _edit_json(path, lambda d: d.update(source_value=-80.4))
    with pytest.raises(ValueError, match=r"patching\.json: its contents do not match.*again"):
        PatchResult.load(path)


# --- generation files -----------------------------------------------------------------------


def _generate(model, path: Path):
    from interp.text.generation import GenerationConfig, Prompt, generate

    prompts = [
        Prompt(f"p{i}", f"g{i}", ({"role": "user", "content": f"Say something {i}."},))
        for i in range(3)
    ]
    config = GenerationConfig(max_new_tokens=4, temperature=1.0, n=1, batch_size=2)
    return generate(model, prompts, config, path, progress=False)


def test_an_edited_sample_in_a_generation_file_is_refused(tiny_model, tmp_path):
    from interp.text.generation import GenerationError, sidecar_path

    path = tmp_path / "samples.jsonl"
    first = _generate(tiny_model, path)
    record = json.loads(sidecar_path(path).read_text())["files"]["samples.jsonl"]
    assert record["bytes"] == path.stat().st_size and len(record["batches"]) == 3
    assert _generate(tiny_model, path) == first  # an intact file resumes as it was
    rows = path.read_text().splitlines()
    sample = json.loads(rows[0])
    sample["messages"][-1]["content"] = "Answer: something else"
    rows[0] = json.dumps(sample)
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(GenerationError) as info:
        _generate(tiny_model, path)
    text = str(info.value)
    assert (
        f"{path}: its first" in text and "differ from the checksum in samples.config.json" in text
    )
    assert "delete the out file and its sidecar" in text


def test_a_generation_file_without_a_record_resumes_with_a_warning(tiny_model, tmp_path):
    from interp.text.generation import sidecar_path

    path = tmp_path / "samples.jsonl"
    first = _generate(tiny_model, path)
    _edit_json(sidecar_path(path), lambda s: s.pop("files"))
    with pytest.warns(UncheckedArtifactWarning, match="samples.jsonl: saved without checksums"):
        assert _generate(tiny_model, path) == first
    assert "files" in json.loads(sidecar_path(path).read_text())  # recorded from now on
