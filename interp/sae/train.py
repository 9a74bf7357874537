"""``train_sae(config)``: cache per-token activations, train a SAELens SAE on them, measure it,
save it under ``<cache>/saes/<name>/``.

The SAE never sees the held-out scenarios of the first (labelled) dataset: they are split
exactly as the probe pipeline splits them (:func:`interp.data.split.split_transcripts` with
the same fraction and seed), so feature rankings and quality figures are on unseen scenarios.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.artifacts import check_same, publish_folder
from interp.cache import ActivationSet, cache_activations
from interp.config import model_options
from interp.data.datasets import load_dataset
from interp.data.split import split_transcripts
from interp.data.transcripts import Transcript, dataset_hash
from interp.hooks import check_layer, hook_name
from interp.models import LoadedModel, load_model
from interp.paths import cache_root
from interp.sae.config import SAEConfig
from interp.sae.data import checked_shards, shard_tokens, token_batches
from interp.sae.quality import loss_increase, reconstruction_stats
from interp.sae.store import MANIFEST, LoadedSAE, SAEManifest, SAEMismatchError, load_sae


@dataclass
class SAEData:
    """The transcripts an SAE is trained and measured on, and their cached activations."""

    transcripts: list[Transcript]
    labelled: list[int]  # rows of the first dataset (the one that is split)
    train_rows: list[int]  # rows the SAE trains on
    heldout_rows: list[int]  # held-out scenarios of the first dataset
    acts: ActivationSet
    hook: str


def prepare_data(config: SAEConfig, model: LoadedModel, root: Path) -> SAEData:
    """Load the datasets, cache per-token ``reply`` activations at the SAE's hook."""
    sets = [load_dataset(spec) for spec in config.datasets]
    transcripts = [t for s in sets for t in s]
    seen: set[str] = set()
    dupes = [t.id for t in transcripts if t.id in seen or seen.add(t.id)]  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(f"transcript ids repeat across datasets (e.g. {dupes[0]!r})")
    train_first, heldout = (
        rows.tolist() for rows in split_transcripts(sets[0], config.test_fraction, config.seed)
    )
    train_rows = train_first + list(range(len(sets[0]), len(transcripts)))
    hook = hook_name(check_layer(config.layer, model.n_layers), config.site)
    acts = cache_activations(
        model,
        transcripts,
        [hook],
        "reply",
        per_token=True,
        batch_size=config.forward_batch_size,
        max_tokens=config.max_tokens,
        cache_dir=root / "activations",
        progress=config.progress,
    )
    return SAEData(transcripts, list(range(len(sets[0]))), train_rows, heldout, acts, hook)


#: Config fields that do not change the SAE (where and how verbosely it runs).
RUN_ONLY_FIELDS = ("progress", "overwrite", "device", "cache_dir", "name")


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k not in RUN_ONLY_FIELDS}
    out["datasets"] = list(out.get("datasets", []))
    return out


def default_name(config: SAEConfig, model: LoadedModel, data_hash: str) -> str:
    slug = Path(model.name).name
    blob = json.dumps(
        {
            **config.to_dict(),
            "fingerprint": model.fingerprint,
            "data": data_hash,
            **dict.fromkeys(RUN_ONLY_FIELDS),
        },
        sort_keys=True,
    ).encode()
    digest = hashlib.blake2b(blob, digest_size=4).hexdigest()
    return f"{slug}-L{config.layer}-{config.site}-{config.architecture}-{digest}"


def make_training_sae(config: SAEConfig, d_in: int, d_sae: int, device: str) -> Any:
    """A fresh SAELens training SAE of ``config.architecture``."""
    from sae_lens.registry import get_sae_training_class

    cls, cfg_cls = get_sae_training_class(config.architecture)
    kwargs: dict[str, Any] = dict(
        d_in=d_in,
        d_sae=d_sae,
        device=device,
        normalize_activations="expected_average_only_in",
    )
    if config.architecture in ("topk", "batchtopk"):
        kwargs["k"] = config.k
    elif config.architecture == "jumprelu":
        kwargs["l0_coefficient"] = config.l1_coefficient
    else:
        kwargs["l1_coefficient"] = config.l1_coefficient
    torch.manual_seed(config.seed)
    return cls(cfg_cls(**kwargs))


def _token_stream(data: SAEData, rows: Sequence[int], chunk: int = 4096) -> Iterator[Tensor]:
    """Tokens of ``rows``, shard by shard, in chunks (for measurements, not training)."""
    keep = set(rows)
    for shard in checked_shards(data.acts):
        tokens = shard_tokens(shard, data.hook, keep)
        yield from tokens.split(chunk)


def mean_activation(data: SAEData, rows: Sequence[int]) -> Tensor:
    total, n = None, 0
    for x in _token_stream(data, rows):
        total = x.sum(0) if total is None else total + x.sum(0)
        n += len(x)
    if total is None or n == 0:
        raise ValueError("no tokens")
    return total / n


def spread(rows: Sequence[int], n: int) -> list[int]:
    """``n`` rows spread evenly over ``rows`` (deterministic)."""
    if n >= len(rows):
        return list(rows)
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


def _check_settings(folder: Path, config: SAEConfig) -> None:
    """Refuse to reuse an SAE in ``folder`` that was trained with other settings (fields that
    only say where and how verbosely a run goes are not compared)."""
    saved = SAEManifest.read(folder)
    check_same(
        _settings(saved.config),
        _settings(config.to_dict()),
        where=folder,
        fix="pass overwrite=True (--overwrite) to retrain, or another name",
        error=SAEMismatchError,
    )


def _training_sae(
    config: SAEConfig, model: LoadedModel, hook: str, data_hash: str
) -> tuple[Any, int]:
    """A fresh training SAE and its width; its metadata records the model, hook and data so
    SAELens' own files say what the SAE reads."""
    d_sae = config.d_sae or 4 * model.d_model
    if config.architecture in ("topk", "batchtopk") and config.k > d_sae:
        raise ValueError(f"k ({config.k}) cannot exceed d_sae ({d_sae})")
    training_sae = make_training_sae(config, model.d_model, d_sae, str(model.device))
    training_sae.cfg.metadata.model_name = model.name
    training_sae.cfg.metadata.hook_name = hook
    training_sae.cfg.metadata.model_fingerprint = model.fingerprint
    training_sae.cfg.metadata.data_hash = data_hash
    return training_sae, d_sae


def _trainer_config(config: SAEConfig, device: str) -> Any:
    """SAELens' trainer settings: ``training_tokens`` in ``batch_size`` steps, cosine decay
    to a tenth of ``lr`` after a short warm-up, dead-feature windows a quarter of the run."""
    from sae_lens.config import SAETrainerConfig

    steps = max(1, config.training_tokens // config.batch_size)
    window = max(1, min(1000, steps // 4))
    return SAETrainerConfig(
        total_training_samples=steps * config.batch_size,
        train_batch_size_samples=config.batch_size,
        lr=config.lr,
        lr_end=config.lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=min(50, steps // 10),
        lr_decay_steps=0,
        device=device,
        dead_feature_window=window,
        feature_sampling_window=window,
        n_batches_for_norm_estimate=min(20, steps),
    )


def _measure(sae: Any, data: SAEData, model: LoadedModel, config: SAEConfig) -> dict[str, Any]:
    """Quality of a trained SAE: reconstruction on held-out and training tokens, and the
    language-model loss when it replaces the activations on ``eval_transcripts`` held-out
    transcripts (compared with mean ablation)."""
    started = time.perf_counter()
    heldout = reconstruction_stats(sae, _token_stream(data, data.heldout_rows))
    on_train = reconstruction_stats(sae, _token_stream(data, data.train_rows))
    mean_act = mean_activation(data, data.train_rows).to(model.device)
    loss_rows = spread(data.heldout_rows, config.eval_transcripts)
    loss = loss_increase(
        model,
        sae,
        data.hook,
        [data.transcripts[i] for i in loss_rows],
        mean_act,
        batch_size=min(8, config.forward_batch_size),
        max_tokens=config.max_tokens,
    )
    return {
        "heldout": asdict(heldout),
        "train": asdict(on_train),
        "loss": loss.to_dict(),
        "measure_seconds": time.perf_counter() - started,
    }


def train_sae(config: SAEConfig, model: LoadedModel | None = None) -> LoadedSAE:
    """Train (or reuse) the SAE ``config`` describes and return it loaded, with its manifest.

    Writes ``<cache>/saes/<name>/`` (SAELens' ``cfg.json`` + ``sae_weights.safetensors``,
    and ``manifest.json`` with the model fingerprint, hook, data hash, config and quality),
    built as ``<name>.partial/`` and renamed when complete.
    """
    from sae_lens import SAE, SAETrainer

    root = Path(config.cache_dir) if config.cache_dir else cache_root()
    model = model or load_model(config.model, **model_options(config))
    data = prepare_data(config, model, root)
    data_hash = dataset_hash(data.transcripts)
    name = config.name or default_name(config, model, data_hash)
    folder = root / "saes" / name
    if (folder / MANIFEST).is_file() and not config.overwrite:
        _check_settings(folder, config)
        return load_sae(folder, model, hook=data.hook)

    training_sae, d_sae = _training_sae(config, model, data.hook, data_hash)
    device = str(model.device)
    trainer_cfg = _trainer_config(config, device)
    batches = token_batches(
        data.acts,
        data.hook,
        config.batch_size,
        keep=data.train_rows,
        buffer_tokens=config.buffer_tokens,
        seed=config.seed,
    )
    started = time.perf_counter()
    trained = SAETrainer(trainer_cfg, training_sae, batches).fit()
    train_seconds = time.perf_counter() - started

    with publish_folder(folder) as partial:
        trained.save_inference_model(partial)
        sae = SAE.load_from_disk(partial, device=device)
        sae.eval()
        quality = _measure(sae, data, model, config)
        SAEManifest(
            model_name=model.name,
            model_fingerprint=model.fingerprint,
            hook=data.hook,
            d_model=model.d_model,
            d_sae=d_sae,
            architecture=config.architecture,
            data_hash=data_hash,
            datasets=list(config.datasets),
            n_train_transcripts=len(data.train_rows),
            n_train_tokens_unique=sum(len(x) for x in _token_stream(data, data.train_rows)),
            config=config.to_dict(),
            quality=quality,
            train_seconds=train_seconds,
            activation_cache=str(data.acts.path),
        ).write(partial)
    return load_sae(folder, model, hook=data.hook)
