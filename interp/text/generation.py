"""Sampling chat replies from a model into transcripts.

``generate(model, prompts, config, out_path)`` renders each :class:`Prompt` (a conversation
that ends with a user turn) with the tokenizer's chat template, batches prompts of similar
length with left padding and samples ``config.n`` replies per prompt with Hugging Face's
``generate`` (key-value cache) on the model inside the bridge. Every reply becomes a
:class:`~interp.data.transcripts.Transcript` whose last message is the assistant's reply, so the
output file is an ordinary transcript JSONL file (``label`` is absent: nothing is labelled).

Generation runs on the plain Hugging Face model (:func:`interp.models.plain.plain_model`:
the bridge's components are swapped back for the modules they wrap, sharing their weights), so
decoding pays no hook overhead and does not depend on the bridge's attention handling the
cache. When hooks are active on the bridge (``with model.bridge.hooks(fwd_hooks=...)``, e.g.
steering or ablation), generation runs through the bridge instead, so that they act on every
step; so does a bridge whose weights were processed (``enable_compatibility_mode``). Greedy
replies are the same on both paths. Inputs go to the device of the input embedding, so a
model dispatched over devices (accelerate ``device_map``) works as it is.

Runs are resumable and reproducible:

- batches are formed deterministically from the whole prompt list, and each batch's random
  generator is seeded from ``config.seed`` and the id of the batch's first prompt, so a
  prompt gets the same samples whichever batches were already done;
- each finished batch is appended to ``out_path`` and synced to disk; a rerun skips prompts
  whose samples are all in the file, and drops a last line cut short by a crash;
- a sidecar ``<out_path stem>.config.json`` records the settings and the model, and a rerun
  with other settings or another model is refused instead of mixing samples in one file;
- after each batch the sidecar records the out file's size and checksum (``files``); a rerun
  checks that the file still begins with exactly those bytes (lines past them are a batch
  whose record a crash cut off, and are checked line by line), so an edited or damaged
  sample is refused naming the file. An out file whose sidecar has no record (an older
  version) is resumed with a warning.
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zlib
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.artifacts import (
    atomic_write,
    blake2b_hex,
    check_same,
    library_versions,
    new_blake2b,
    warn_unchecked,
    write_json_atomic,
)
from interp.config import check_number
from interp.data.padding import pad_left
from interp.data.transcripts import ROLES, Transcript, transcript_from_dict
from interp.models import LoadedModel
from interp.models.plain import needs_bridge, plain_model

FORMAT_VERSION = 1
END_OF_TURN = "<|im_end|>"  # ChatML's end of turn (SmolLM2, Qwen, ...)


#: ``meta`` keys of the built-in datasets that describe a transcript's reply.
REPLY_KEYS = ("reasoning", "answer", "strategy")


class GenerationError(ValueError):
    """An out file or sidecar that does not belong to this run; the message says what to do."""


@dataclass
class GenerationConfig:
    """How replies are sampled.

    ``temperature=0`` decodes greedily (``top_p`` is then unused); with ``temperature > 0``
    tokens are sampled from the ``top_p`` nucleus (no top-k cut: Hugging Face's default of
    50 is switched off). ``n`` replies are drawn per prompt. ``batch_size`` counts prompts
    per ``generate`` call (each expands to ``n`` rows). ``batch_size`` and ``seed`` both
    decide which samples are drawn, so a run can only be resumed with the same values.
    """

    max_new_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    repetition_penalty: float = 1.1
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "n", "seed", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
        check_number("max_new_tokens", self.max_new_tokens, low=1, integer=True, error=ValueError)
        check_number("n (samples per prompt)", self.n, low=1, integer=True, error=ValueError)
        check_number("batch_size", self.batch_size, low=1, integer=True, error=ValueError)
        check_number("seed", self.seed, low=0, integer=True, error=ValueError)
        check_number(
            "temperature", self.temperature, low=0, hint=" (0 = greedy decoding)", error=ValueError
        )
        check_number("top_p", self.top_p, low=0, high=1, low_open=True, error=ValueError)
        check_number(
            "repetition_penalty",
            self.repetition_penalty,
            low=0,
            low_open=True,
            hint=" (1.0 = no penalty)",
            error=ValueError,
        )
        if self.greedy and self.n > 1:
            raise ValueError(
                f"temperature=0 with n={self.n}: greedy decoding gives n identical samples; "
                "set temperature > 0"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Prompt:
    """A conversation to continue: its last message is the user turn to answer.

    ``id`` names the prompt (sample ``k`` becomes transcript ``f"{id}-s{k}"``), ``group``
    the scenario it belongs to; ``meta`` is copied into every sample's transcript.
    """

    id: str
    group: str
    messages: tuple[dict[str, str], ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        where = f"prompt {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"prompt id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.group, str) or not self.group:
            raise ValueError(f"{where}: group must be a non-empty string (the scenario id)")
        if isinstance(self.messages, str | bytes | dict) or not isinstance(self.messages, Sequence):
            raise ValueError(f"{where}: messages must be a sequence of chat turns")
        if not self.messages:
            raise ValueError(f"{where}: messages is empty; a prompt needs at least a user turn")
        messages = []
        for i, msg in enumerate(self.messages):
            if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
                raise ValueError(
                    f"{where}: messages[{i}] must be an object with 'role' and 'content' only"
                )
            if msg["role"] not in ROLES:
                raise ValueError(
                    f"{where}: messages[{i}] has role {msg['role']!r}; use one of {ROLES}"
                )
            if not isinstance(msg["content"], str):
                raise ValueError(f"{where}: messages[{i}].content must be a string")
            messages.append({"role": msg["role"], "content": msg["content"]})
        if messages[-1]["role"] != "user":
            raise ValueError(
                f"{where}: the last message must be the user turn to answer, got role "
                f"{messages[-1]['role']!r} (from a transcript, use Prompt.from_transcript)"
            )
        if not isinstance(self.meta, dict):
            raise ValueError(f"{where}: meta must be a dict")
        try:
            json.dumps(self.meta)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: meta must be JSON-serialisable ({err})") from None
        object.__setattr__(self, "messages", tuple(messages))

    @classmethod
    def from_transcript(cls, transcript: Transcript, drop_last: bool = True) -> Prompt:
        """The prompt of a transcript: its messages without the last (assistant) reply.

        ``meta`` is copied without the keys that describe the dropped reply (the built-in
        datasets' ``reasoning``/``answer`` stances and ``strategy``): they would mislabel the
        new samples in the probe's stance controls.
        """
        messages = transcript.messages[:-1] if drop_last else transcript.messages
        meta = {k: v for k, v in transcript.meta.items() if k not in REPLY_KEYS}
        if drop_last:
            meta["source_id"] = transcript.id
        return cls(id=transcript.id, group=transcript.group, messages=messages, meta=meta)


def sidecar_path(out_path: str | Path) -> Path:
    """Where the settings of ``out_path`` are recorded: ``samples.jsonl`` ->
    ``samples.config.json``."""
    return Path(out_path).with_suffix(".config.json")


def stop_token_ids(model: LoadedModel) -> list[int]:
    """Token ids that end a reply: the tokenizer's EOS, ChatML's ``<|im_end|>`` when the
    vocabulary has it, and the EOS ids of the model's generation config."""
    tokenizer = model.tokenizer
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)  # the unknown token's id if absent
    if end_of_turn is not None and tokenizer.convert_ids_to_tokens(end_of_turn) == END_OF_TURN:
        ids.append(int(end_of_turn))  # (not `in get_vocab()`: that builds a dict of the vocabulary)
    gen_config = getattr(model.bridge.original_model, "generation_config", None)
    extra = getattr(gen_config, "eos_token_id", None)
    if extra is not None:
        ids.extend(int(i) for i in ([extra] if isinstance(extra, int) else extra))
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise GenerationError(
            f"model {model.name!r}: the tokenizer has no EOS token and no {END_OF_TURN}, so "
            "replies could not stop; set tokenizer.eos_token to the end-of-turn token"
        )
    return ids


def _sidecar(model: LoadedModel, config: GenerationConfig, stops: list[int]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "model": {"name": model.name, "fingerprint": model.fingerprint},
        "stop_token_ids": stops,
        "versions": library_versions(),
    }


#: Sidecar entries a resumed run must match (``versions`` is a record, not compared).
_COMPARED = ("format_version", "config", "model", "stop_token_ids")


def _check_sidecar(out_path: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """Refuse to add to an out file made with other settings (or of unknown settings);
    returns the sidecar found."""
    side = sidecar_path(out_path)
    if not side.is_file():
        raise GenerationError(
            f"{out_path} already holds samples but {side} (its settings) is missing, so they "
            "may come from other settings; delete or move the out file, or restore the sidecar"
        )
    try:
        found = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GenerationError(f"{side}: not valid JSON ({err.msg}); restore or delete it") from None
    if not isinstance(found, dict):
        raise GenerationError(f"{side}: expected a JSON object of settings; restore or delete it")
    check_same(
        {k: found[k] for k in _COMPARED if k in found},
        {k: expected[k] for k in _COMPARED},
        where=out_path,
        fix="use the same settings to resume it, or write to another out_path",
        error=GenerationError,
    )
    return found


class SamplesRecord:
    """The out file's size and checksum, recorded in its sidecar under ``files`` after every
    appended batch, with one ``[bytes, blake2b]`` entry per batch boundary (``batches``), so a
    rerun can check the samples were not changed since, even when a crash cut the file back.
    The hash grows with each batch (the file is never re-read to record it)."""

    def __init__(self, out_path: Path, sidecar: dict[str, Any], batches: list[list[Any]]):
        self.out_path, self.sidecar = out_path, sidecar
        data = out_path.read_bytes() if out_path.is_file() else b""
        self.hash = new_blake2b()
        self.hash.update(data)
        self.size = len(data)
        self.batches = [b for b in batches if b[0] < self.size]
        self.batches.append([self.size, self.hash.hexdigest()])
        self.write()

    def add(self, blob: bytes) -> None:
        """Record ``blob``, just appended to the out file."""
        self.hash.update(blob)
        self.size += len(blob)
        self.batches.append([self.size, self.hash.hexdigest()])
        self.write()

    def write(self) -> None:
        record = {"bytes": self.size, "blake2b": self.hash.hexdigest(), "batches": self.batches}
        files = {self.out_path.name: record}
        write_json_atomic(sidecar_path(self.out_path), {**self.sidecar, "files": files})


def _check_recorded(out_path: Path, data: bytes, found: dict[str, Any]) -> list[list[Any]]:
    """Check that the out file's bytes ``data`` begin with the longest batch boundary its
    sidecar ``found`` recorded that fits in them (lines past it are checked line by line);
    returns the boundaries so checked. An older sidecar without a record is accepted with a
    warning."""
    record = (found.get("files") or {}).get(out_path.name)
    side = sidecar_path(out_path).name
    fix = "delete the out file and its sidecar to generate again, or restore them"
    if not isinstance(record, dict):
        warn_unchecked(out_path, "its samples are resumed after line checks only")
        return []
    batches = record.get("batches")
    ok = isinstance(batches, list) and all(
        isinstance(b, list) and len(b) == 2 and isinstance(b[0], int) for b in batches
    )
    if not ok or not batches:
        raise GenerationError(f"{sidecar_path(out_path)}: 'files' record is damaged; {fix}")
    kept = [b for b in batches if b[0] <= len(data)]
    size, checksum = max(kept, key=lambda b: b[0]) if kept else (0, blake2b_hex(b""))
    if blake2b_hex(data[:size]) != checksum:
        raise GenerationError(
            f"{out_path}: its first {size} bytes differ from the checksum in {side} (samples "
            f"edited or damaged after they were written); {fix}"
        )
    return kept


def _read_existing(
    out_path: Path, prompts: Sequence[Prompt], n: int, sidecar: dict[str, Any]
) -> tuple[dict[str, Transcript], list[list[Any]]]:
    """Samples already in ``out_path`` by transcript id, each line checked, then the bytes
    checked against the record of the found ``sidecar`` (:func:`_check_recorded`, whose
    result comes second), then a cut-off last line repaired."""
    data = out_path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a newline
    last = max((i for i, line in enumerate(lines) if line.strip()), default=None)
    expected = {f"{p.id}-s{k}": (p, k) for p in prompts for k in range(n)}
    found: dict[str, Transcript] = {}
    keep: list[bytes] = []
    dropped = False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{out_path}:{i + 1}"
        try:
            raw = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if i == last:  # a write cut short by a crash: drop it, its batch runs again
                dropped = True
                warnings.warn(
                    f"{where}: dropping an incomplete last line (an interrupted write); "
                    "its prompts are generated again",
                    stacklevel=4,
                )
                continue
            raise GenerationError(
                f"{where}: not valid JSON ({err}); only the last line may be cut short by a "
                "crash, so this file was edited or corrupted: fix or delete it"
            ) from None
        t = transcript_from_dict(raw, where)
        if t.id not in expected:
            raise GenerationError(
                f"{where}: transcript {t.id!r} is not a sample of any of the given prompts "
                f"(n={n}): the out file belongs to another prompt set; write to another "
                "out_path or pass the prompts it was made from"
            )
        if t.id in found:
            raise GenerationError(f"{where}: duplicate transcript id {t.id!r}; fix or delete it")
        prompt, _ = expected[t.id]
        if t.messages[:-1] != prompt.messages:
            raise GenerationError(
                f"{where}: transcript {t.id!r} continues another conversation than prompt "
                f"{prompt.id!r}: the out file belongs to another prompt set (same ids, other "
                "messages); write to another out_path"
            )
        found[t.id] = t
        keep.append(line)
    checked = _check_recorded(out_path, data, sidecar)
    if dropped or (data and not data.endswith(b"\n")):
        blob = b"".join(line + b"\n" for line in keep)
        atomic_write(out_path, lambda tmp: tmp.write_bytes(blob))
    return found, checked


def _append(out_path: Path, transcripts: Sequence[Transcript]) -> bytes:
    """Append transcripts as JSONL lines in one write, then flush and sync to disk; returns
    the bytes appended."""
    text = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in transcripts)
    blob = text.encode("utf-8")
    with out_path.open("ab") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())
    return blob


def batch_seed(seed: int, first_prompt_id: str) -> int:
    """The seed of a batch: stable across processes (``zlib.crc32``, not ``hash``)."""
    return (seed + zlib.crc32(first_prompt_id.encode("utf-8"))) % 2**63


def _fork_rng(devices: set[torch.device]):
    """Keep the caller's random state: seeding a batch must not reseed the whole program.
    ``devices`` are those the model's weights are on (several when it is dispatched)."""
    cuda = sorted(
        {
            d.index if d.index is not None else torch.cuda.current_device()
            for d in devices
            if d.type == "cuda"
        }
    )
    if cuda:
        return torch.random.fork_rng(devices=cuda, device_type="cuda")
    return torch.random.fork_rng(devices=[])


def _check_prompts(prompts: Sequence[Prompt]) -> None:
    """Refuse an empty prompt list, anything that is not a :class:`Prompt`, and repeated
    prompt ids (a sample's transcript id is built from its prompt's id)."""
    if not prompts:
        raise ValueError("no prompts to generate from")
    for p in prompts:
        if not isinstance(p, Prompt):
            raise TypeError(
                f"prompts must be Prompt objects, got {type(p).__name__}; "
                "build them with Prompt(...) or Prompt.from_transcript(t)"
            )
    seen: set[str] = set()
    dupes = [p.id for p in prompts if p.id in seen or seen.add(p.id)]
    if dupes:
        raise ValueError(f"duplicate prompt ids {dupes[:5]}; prompt ids must be unique")


def _open_out_file(
    out_path: Path, sidecar: dict[str, Any], prompts: Sequence[Prompt], n: int
) -> tuple[dict[str, Transcript], SamplesRecord]:
    """The samples already in ``out_path`` after checking its sidecar and recorded checksums,
    and the record that follows the batches appended next; for a new (or empty) out file,
    write the sidecar and start from nothing."""
    if out_path.is_file() and out_path.stat().st_size > 0:
        found = _check_sidecar(out_path, sidecar)
        existing, checked = _read_existing(out_path, prompts, n, found)
        return existing, SamplesRecord(out_path, sidecar, checked)  # the file as repaired
    return {}, SamplesRecord(out_path, sidecar, [])


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Token ids of each prompt rendered with the chat template, ready for the reply."""
    encoded = []
    for p in prompts:
        text = tokenizer.apply_chat_template(
            list(p.messages), add_generation_prompt=True, tokenize=False
        )
        encoded.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return encoded


def length_batches(encoded: Sequence[list[int]], batch_size: int) -> list[list[int]]:
    """Indices of ``encoded`` in batches of ``batch_size``, shortest prompts first (ties in
    input order), so that a batch holds prompts of similar length and little padding."""
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def hf_generate_kwargs(config: GenerationConfig, pad_id: int, stops: list[int]) -> dict[str, Any]:
    """Arguments of Hugging Face's ``generate`` for ``config``: greedy, or nucleus sampling
    with its top-k cut switched off."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": not config.greedy,
        "repetition_penalty": config.repetition_penalty,
        "num_return_sequences": config.n,
        "pad_token_id": pad_id,
        "eos_token_id": stops,
    }
    if not config.greedy:
        kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
    return kwargs


def _sample(
    model: LoadedModel, rows: Sequence[list[int]], pad_id: int, seed: int, kwargs: dict[str, Any]
) -> list[list[int]]:
    """The new tokens of each returned sequence (``n`` per row, row-major) for one batch,
    sampled with the batch's own seed inside a forked random state: on the plain Hugging Face
    model, or through the bridge when hooks are active on it (or its weights were processed)."""
    ids, attention = pad_left(rows, pad_id)
    bridge = model.bridge
    route = nullcontext(bridge.original_model) if needs_bridge(bridge) else plain_model(bridge)
    with route as hf, torch.inference_mode():
        device = _input_device(hf)
        with _fork_rng({p.device for p in hf.parameters()}):
            torch.manual_seed(seed)
            out = hf.generate(ids.to(device), attention_mask=attention.to(device), **kwargs)
    return out[:, ids.shape[1] :].tolist()


def _input_device(hf_model: Any) -> torch.device:
    """Where inputs go: the device of the input embedding (the first of a model dispatched
    over several devices)."""
    return next(hf_model.get_input_embeddings().parameters()).device


def _sample_transcript(
    prompt: Prompt, k: int, tokens: list[int], tokenizer: Any, stop_set: set[int]
) -> Transcript:
    """Sample ``k`` of ``prompt`` as a transcript: the reply is decoded up to the first stop
    token (without special tokens, stripped); ``meta`` records its length and why it ended."""
    end = _reply_end(tokens, stop_set)
    reply_ids = tokens if end is None else tokens[:end]
    reply = tokenizer.decode(reply_ids, skip_special_tokens=True).strip()
    return Transcript(
        id=f"{prompt.id}-s{k}",
        group=prompt.group,
        messages=(*prompt.messages, {"role": "assistant", "content": reply}),
        label=None,
        meta={
            **prompt.meta,
            "sample": k,
            "generated": True,
            "n_new_tokens": _n_new_tokens(tokens, stop_set),
            "stopped": "length" if end is None else "eos",
        },
    )


def _reply_end(tokens: list[int], stop_set: set[int]) -> int | None:
    """Position of the first stop token in a row of new tokens; None when the reply was cut
    at ``max_new_tokens``."""
    return next((j for j, tok in enumerate(tokens) if tok in stop_set), None)


def _n_new_tokens(tokens: list[int], stop_set: set[int]) -> int:
    """Generated tokens of a reply up to and including its stop token (all if none)."""
    end = _reply_end(tokens, stop_set)
    return len(tokens) if end is None else end + 1


def generate(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    config: GenerationConfig,
    out_path: str | Path,
    progress: bool = True,
) -> list[Transcript]:
    """Sample ``config.n`` replies to each prompt, appending them to ``out_path`` (JSONL).

    Returns every sample of ``prompts`` (read back from ``out_path`` or new), in prompt order
    then sample order. Sample ``k`` of prompt ``p`` is transcript ``f"{p.id}-s{k}"``: the
    prompt's messages plus ``{"role": "assistant", "content": reply}``, with ``meta`` =
    ``{**p.meta, "sample": k, "generated": True, "n_new_tokens": ..., "stopped": ...}``.
    ``n_new_tokens`` counts the generated tokens including the end-of-turn token;
    ``stopped`` is ``"eos"`` when the model ended its turn, ``"length"`` when the reply was
    cut at ``max_new_tokens``. Replies are decoded without special tokens and stripped; an
    empty reply is kept (content ``""``) and counted in the progress bar.
    """
    _check_prompts(prompts)
    out_path = Path(out_path)
    tokenizer = model.tokenizer
    stops = stop_token_ids(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    sidecar = _sidecar(model, config, stops)
    existing, record = _open_out_file(out_path, sidecar, prompts, config.n)

    # Batches come from the whole prompt list (never only the missing prompts), so a batch,
    # its padding and its seed are the same in every run.
    encoded = encode_prompts(tokenizer, prompts)
    batches = length_batches(encoded, config.batch_size)

    def missing(i: int) -> list[int]:
        return [k for k in range(config.n) if f"{prompts[i].id}-s{k}" not in existing]

    todo = [b for b in batches if any(missing(i) for i in b)]
    kwargs = hf_generate_kwargs(config, pad_id, stops)
    stop_set = set(stops)
    bar = tqdm(
        total=sum(1 for b in todo for i in b if missing(i)),
        desc=f"generating {config.n} sample(s)/prompt",
        unit="prompt",
        disable=not progress,
        mininterval=1.0,
    )
    new_tokens, gen_seconds, n_empty = 0, 0.0, 0
    try:
        for batch in todo:
            pending = sum(1 for i in batch if missing(i))
            started = time.perf_counter()
            seed = batch_seed(config.seed, prompts[batch[0]].id)
            generated = _sample(model, [encoded[i] for i in batch], pad_id, seed, kwargs)
            gen_seconds += time.perf_counter() - started
            new_tokens += sum(_n_new_tokens(tokens, stop_set) for tokens in generated)
            written = [
                _sample_transcript(
                    prompts[i], k, generated[row * config.n + k], tokenizer, stop_set
                )
                for row, i in enumerate(batch)
                for k in missing(i)
            ]
            existing.update((t.id, t) for t in written)
            n_empty += sum(t.messages[-1]["content"] == "" for t in written)
            record.add(_append(out_path, written))
            bar.update(pending)
            rate = new_tokens / gen_seconds if gen_seconds > 0 else 0.0
            bar.set_postfix(new_tok_per_s=f"{rate:.0f}", empty=n_empty, refresh=False)
    finally:
        bar.close()
    return [existing[f"{p.id}-s{k}"] for p in prompts for k in range(config.n)]
