"""Nothing is read that was not written: no pickle is ever loaded (a planted one would run
code), and a damaged or edited saved SAE is refused with an error that names the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from interp.models import ModelError, build_tiny_random, load_model
from interp.sae.config import SAEConfig
from interp.sae.store import SAEFormatError, SAEManifest, load_sae
from interp.sae.train import make_training_sae

HOOK = "blocks.0.hook_resid_post"


class _Planted:
    """Unpickling this creates ``marker`` (harmless stand-in for ``os.system``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path) -> Path:
    """Write a pickle at ``path`` (torch.save's format) that creates ``marker`` when loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": _Planted(marker)}, path)
    return path


def test_a_planted_pickle_carries_a_call_and_safe_loading_refuses_it(tmp_path):
    """The planted files are live without our running them: their pickle stream (read with
    pickletools, which executes nothing) imports ``open`` and calls it, and torch's
    ``weights_only=True`` loader refuses the file without creating the marker."""
    import pickletools
    import zipfile

    marker = tmp_path / "marker"
    path = plant(tmp_path / "optimizer.pt", marker)
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
        ops = [(op.name, arg) for op, arg, _ in pickletools.genops(archive.read(name))]
    assert ("GLOBAL", "io open") in ops  # the callable the pickle imports...
    assert ("BINUNICODE", str(marker)) in ops  # ...its argument...
    assert "REDUCE" in [op for op, _ in ops]  # ...and the call
    with pytest.raises(Exception, match=r"(?i)weights only|unsupported"):
        torch.load(path, weights_only=True)
    assert not marker.exists()


# --- fine-tune checkpoints -------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    from interp.models import smollm2_tokenizer

    smollm2_tokenizer().save_pretrained(tmp_path / "tokenizers" / "smollm2-135m-instruct")
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    return tmp_path


def _tiny(**overrides):
    from interp.finetune import FinetuneConfig

    settings = dict(
        base="tiny-random", method="full", steps=3, batch_size=2, lr=1e-3,
        checkpoint_every=0, progress=False, device="cpu", name="planted",
    )  # fmt: skip
    return FinetuneConfig(**{**settings, **overrides})


def test_checkpoint_of_the_old_pickle_format_is_never_unpickled(cache, capsys):
    from interp.finetune import checkpoint_dir, finetune
    from interp.finetune.config import CheckpointWarning

    finetune(_tiny(), stop_after=1)
    step = checkpoint_dir("planted") / "step-000001"
    marker = cache / "marker"
    for name in ("optimizer.safetensors", "rng.safetensors"):
        (step / name).unlink()
    plant(step / "optimizer.pt", marker)
    plant(step / "rng.pt", marker)
    state = json.loads((step / "state.json").read_text())
    del state["files"]  # as the old version wrote it
    (step / "state.json").write_text(json.dumps(state))
    with pytest.warns(CheckpointWarning) as caught:
        result = finetune(_tiny())
    assert not marker.exists()
    text = " | ".join(str(w.message) for w in caught)
    assert (
        "step-000001: written by an older interp.finetune (optimizer.pt, rng.pt are pickles" in text
    )
    assert "training restarts from step 0" in text
    assert result.finished and "resuming" not in capsys.readouterr().out


def test_pickles_planted_beside_a_checkpoint_are_ignored(cache, capsys):
    from interp.finetune import checkpoint_dir, finetune
    from interp.finetune.config import CheckpointWarning

    finetune(_tiny(), stop_after=1)
    step = checkpoint_dir("planted") / "step-000001"
    marker = cache / "marker"
    for name in ("optimizer.pt", "rng.pt", "trainable.bin"):
        plant(step / name, marker)
    with pytest.warns(CheckpointWarning, match=r"step-000001/optimizer\.pt: not a file of this"):
        finetune(_tiny())
    assert not marker.exists()
    assert "resuming from step 1" in capsys.readouterr().out


# --- saved and converted models --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory) -> Path:
    """The tiny random model and its tokenizer saved with save_pretrained (safetensors)."""
    folder = tmp_path_factory.mktemp("tiny-saved") / "model"
    model, tokenizer = build_tiny_random()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _pickled_copy(tiny_saved: Path, folder: Path, marker: Path) -> Path:
    """A copy of the saved model whose weights are a planted ``pytorch_model.bin``."""
    shutil.copytree(tiny_saved, folder)
    (folder / "model.safetensors").unlink()
    plant(folder / "pytorch_model.bin", marker)
    return folder


def test_model_folder_with_pickle_weights_is_refused_by_name(tiny_saved, tmp_path):
    marker = tmp_path / "marker"
    folder = _pickled_copy(tiny_saved, tmp_path / "local", marker)
    with pytest.raises(ModelError, match=r"local/pytorch_model\.bin: model weights in pickle"):
        load_model(str(folder), device="cpu")
    assert not marker.exists()


def test_saved_model_with_pickle_weights_is_refused_by_name(tiny_saved, cache):
    marker = cache / "marker"
    _pickled_copy(tiny_saved, cache / "models" / "evil", marker)
    with pytest.raises(ModelError, match=r"models/evil/pytorch_model\.bin: .*never loaded"):
        load_model("evil", device="cpu")
    assert not marker.exists()


def test_pickle_beside_safetensors_is_never_read(tiny_saved, tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "both"
    shutil.copytree(tiny_saved, folder)
    plant(folder / "pytorch_model.bin", marker)
    plant(folder / "training_args.bin", marker)
    loaded = load_model(str(folder), device="cpu")
    assert loaded.n_layers == 2 and not marker.exists()


def test_cached_hub_model_with_pickle_weights_is_refused_by_name(tiny_saved, tmp_path, monkeypatch):
    import huggingface_hub.constants

    marker = tmp_path / "marker"
    hub = tmp_path / "hub"
    repo = hub / "models--someone--evil-model"
    snapshot = repo / "snapshots" / ("0" * 40)
    _pickled_copy(tiny_saved, snapshot, marker)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(
        ModelError, match=r"pytorch_model\.bin: model weights in pickle format are never loaded"
    ):
        load_model("someone/evil-model", device="cpu")
    assert not marker.exists()


def test_cached_hub_model_loads_from_the_local_cache_without_the_network(
    tiny_saved, tmp_path, monkeypatch
):
    """A Hugging Face id in the local cache loads from its snapshot folder without asking the
    Hub: before, transformers' adapter lookup asked it despite local_files_only (about 20 s of
    retries on a machine without internet)."""
    import huggingface_hub.constants
    import huggingface_hub.file_download

    hub = tmp_path / "hub"
    repo = hub / "models--someone--good-model"
    shutil.copytree(tiny_saved, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    asked = []

    def no_network(*args, **kwargs):
        asked.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", no_network)
    model = load_model("someone/good-model", device="cpu")
    assert asked == []
    assert model.name == "someone/good-model" and model.n_layers == 2


# --- saved SAEs ------------------------------------------------------------------------------


@pytest.fixture
def sae_folder(tmp_path) -> Path:
    """An untrained top-k SAE saved as interp.sae saves one (SAELens' files plus manifest)."""
    config = SAEConfig(model="tiny-random", layer=0, d_sae=96, k=8, progress=False)
    sae = make_training_sae(config, 64, 96, "cpu")
    sae.cfg.metadata.hook_name = HOOK
    folder = tmp_path / "sae"
    sae.save_inference_model(folder)
    SAEManifest(
        model_name="tiny-random", model_fingerprint="f" * 24, hook=HOOK, d_model=64, d_sae=96,
        architecture="topk", data_hash="d" * 24, datasets=["x"], n_train_transcripts=1,
        n_train_tokens_unique=1, config=config.to_dict(),
    ).write(folder)  # fmt: skip
    return folder


def test_intact_sae_folder_loads(sae_folder):
    assert load_sae(sae_folder).sae.cfg.d_sae == 96


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "sae_weights.safetensors")


def _save_weights(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file(tensors, folder / "sae_weights.safetensors")


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan(f: Path) -> None:
    w = _weights(f)
    w["W_dec"][3, 5] = float("nan")
    _save_weights(f, w)


def _reshape(f: Path) -> None:
    w = _weights(f)
    w["W_enc"] = w["W_enc"][:, :90].contiguous()
    _save_weights(f, w)


def _drop(f: Path) -> None:
    w = _weights(f)
    del w["b_enc"]
    _save_weights(f, w)


def _half(f: Path) -> None:
    _save_weights(f, {k: v.half() for k, v in _weights(f).items()})


TAMPERING = {
    "truncated weights": (
        lambda f: _truncate(f / "sae_weights.safetensors"),
        r"sae_weights\.safetensors: not a readable safetensors file",
    ),
    "pickle as weights": (
        lambda f: plant(f / "sae_weights.safetensors", f / "marker"),
        r"sae_weights\.safetensors: not a readable safetensors file",
    ),
    "missing weights": (
        lambda f: (f / "sae_weights.safetensors").unlink(),
        r"sae_weights\.safetensors: missing",
    ),
    "NaN weight": (_nan, r"sae_weights\.safetensors: W_dec holds NaN or infinite values"),
    "wrong shape": (_reshape, r"W_enc has shape \(64, 90\), expected \(64, 96\)"),
    "missing key": (_drop, r"sae_weights\.safetensors: no b_enc"),
    "other dtype": (_half, r"W_dec is torch\.float16, but cfg\.json says float32"),
    "edited hook": (
        lambda f: _edit_json(
            f / "manifest.json", lambda m: m.update(hook="blocks.1.hook_resid_post")
        ),
        r"cfg\.json: metadata\.hook_name is 'blocks\.0\.hook_resid_post' but manifest\.json says "
        r"'blocks\.1",
    ),
    "edited width": (
        lambda f: _edit_json(f / "cfg.json", lambda c: c.update(d_sae=128)),
        r"cfg\.json: d_sae is 128 but manifest\.json says 96",
    ),
    "edited architecture": (
        lambda f: _edit_json(f / "manifest.json", lambda m: m.update(architecture="standard")),
        r"cfg\.json: metadata\.training_architecture is 'topk' but manifest\.json says 'standard'",
    ),
    "empty manifest": (
        lambda f: (f / "manifest.json").write_text(""),
        r"manifest\.json: not valid JSON \(Expecting value at line 1 column 1\)",
    ),
    "manifest without hook": (
        lambda f: _edit_json(f / "manifest.json", lambda m: m.pop("hook")),
        r"manifest\.json: not an interp\.sae manifest \(missing: hook; unknown: none\)",
    ),
    "manifest with wrong type": (
        lambda f: _edit_json(f / "manifest.json", lambda m: m.update(d_sae="96")),
        r"manifest\.json: d_sae is '96', not of type",
    ),
    "garbage cfg": (
        lambda f: (f / "cfg.json").write_text("{"),
        r"cfg\.json: not valid JSON",
    ),
    # damage that keeps the structure: only the checksums in manifest.json see it
    "flipped weight bit": (
        lambda f: _flip_bit(f / "sae_weights.safetensors"),
        r"sae_weights\.safetensors: checksum differs from the one in manifest\.json.*"
        r"train the SAE again",
    ),
    "edited cfg value": (
        lambda f: _edit_json(f / "cfg.json", lambda c: c.update(apply_b_dec_to_input=False)),
        r"cfg\.json: \d+ bytes, but manifest\.json records|cfg\.json: checksum differs",
    ),
    "edited manifest value": (
        lambda f: _edit_json(f / "manifest.json", lambda m: m.update(n_train_transcripts=7)),
        r"manifest\.json: its contents do not match the checksum recorded in it",
    ),
    "truncated cfg": (
        lambda f: _truncate(f / "cfg.json"),
        r"cfg\.json: not valid JSON .*; train the SAE again \(python -m interp\.sae",
    ),
}


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # a low bit of a float32 weight: still finite, still parses
    path.write_bytes(bytes(data))


def test_an_sae_saved_without_checksums_loads_with_a_warning(sae_folder):
    from probes.io import UncheckedArtifactWarning

    _edit_json(sae_folder / "manifest.json", lambda m: [m.pop("files"), m.pop("blake2b")])
    with pytest.warns(UncheckedArtifactWarning, match=r"saved without checksums.*--overwrite"):
        load_sae(sae_folder)


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_sae_folder_is_refused_by_name(sae_folder, case):
    tamper, message = TAMPERING[case]
    tamper(sae_folder)
    with pytest.raises(SAEFormatError, match=message):
        load_sae(sae_folder)
    assert not (sae_folder / "marker").exists()
