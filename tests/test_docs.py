"""The documentation cannot go stale: every ```python block of README.md and docs/*.md runs.

Conventions for whoever writes the docs:

- Every ```python block is a test, ``test_python_block[<file>-<index>]`` (index = the block's
  position among the file's python blocks, from 0). It runs in a fresh namespace, in an empty
  working directory (``tmp_path``) where the repository's ``experiments/`` and ``tests/`` are
  linked (so data paths such as ``experiments/data/independent_eval.jsonl`` resolve), with
  ``INTERP_CACHE`` pointing at one temporary cache shared by this file's tests (it starts
  with only SmolLM2's tokenizer, used by the tiny model). Sharing it is what a reader's cache
  does and only saves time: an identical ``cache_activations`` call reuses the activations
  another block cached, which are the same numbers it would compute. Files a block writes
  into its working directory (run folders given with ``out=``...) are its own.
- A block directly preceded by ``<!-- continues -->`` (text after ``continues`` is a comment)
  continues the block before it: the two (or more) run as one test, in one namespace,
  ``test_python_block[<file>-<first>+<next>]``.
- A block directly preceded by ``<!-- not-tested: <reason> -->`` is skipped with that reason
  (aim for none).
- Snippets show the real default model; before running, each block's code goes through the
  few substitutions of :data:`SUBSTITUTIONS` below (and nothing else).

Other checks: every relative link (and its ``#anchor``) of README/docs points to a file and a
heading that exist, and every ``python -m <module>`` and ``experiments/...`` path named
anywhere in them (bash blocks and prose included) exists.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: (pattern, replacement) applied in order to every python block before it runs.
SUBSTITUTIONS: list[tuple[re.Pattern[str], str]] = [
    # the embedded default model -> the built-in 2-layer random Llama with the same tokenizer
    (re.compile(re.escape('"smollm2-135m-instruct"')), '"tiny-random"'),
    # the docs' layer 14 -> 0 (tiny-random has blocks 0 and 1; block 0 stops before its
    # costly unembedding)
    (re.compile(r"\b14\b"), "0"),
    # the probe pipeline on 4 scenarios instead of 48
    (re.compile(re.escape("ProbeConfig(")), "ProbeConfig(max_scenarios=4, "),
    # the built-in training set cut to its first 64 transcripts (4 whole scenarios)
    (
        re.compile(re.escape('load_dataset("builtin:consistency")')),
        'load_dataset("builtin:consistency")[:64]',
    ),
    # generated replies of 16 new tokens instead of 160
    (re.compile(re.escape("GenerationConfig(")), "GenerationConfig(max_new_tokens=16, "),
]

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(continues|not-tested)\b:?\s*([^>]*?)\s*-->\s*$")


@dataclass
class Block:
    file: Path
    index: int
    code: str
    marker: str | None  # "continues", "not-tested" or None
    reason: str


def python_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    blocks: list[Block] = []
    for match in _FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[: match.start()].rstrip()
        marker = _MARKER.search(before[-300:])
        kind, reason = (marker.group(1), marker.group(2)) if marker else (None, "")
        blocks.append(Block(path, len(blocks), match.group(2), kind, reason))
    return blocks


def chains() -> list[list[Block]]:
    """Blocks grouped so that a ``continues`` block runs after the ones it continues."""
    out: list[list[Block]] = []
    for path in DOC_FILES:
        for block in python_blocks(path):
            if block.marker == "continues":
                if block.index == 0:
                    raise ValueError(f"{path.name}: its first python block cannot continue")
                out[-1].append(block)
            else:
                out.append([block])
    return out


def chain_id(chain: list[Block]) -> str:
    return f"{chain[0].file.name}-{'+'.join(str(b.index) for b in chain)}"


def substitute(code: str) -> str:
    for pattern, replacement in SUBSTITUTIONS:
        code = pattern.sub(replacement, code)
    return code


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer, saved once from the repository cache (tiny-random uses it)."""
    from interp.models import smollm2_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    smollm2_tokenizer(ROOT / "cache").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def docs_cache(tmp_path_factory, tokenizer_dir) -> Path:
    """The cache root of the docs' snippets: empty but for the tiny model's tokenizer."""
    from interp.models import DEFAULT_MODEL

    cache = tmp_path_factory.mktemp("docs_cache")
    shutil.copytree(tokenizer_dir, cache / "tokenizers" / DEFAULT_MODEL)
    return cache


@pytest.fixture
def docs_workdir(tmp_path, monkeypatch, docs_cache) -> Path:
    """An empty working directory with the repository's data linked, on the docs' cache."""
    cache = docs_cache
    for name in ("experiments", "tests"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("chain", chains(), ids=chain_id)
def test_python_block(chain: list[Block], docs_workdir: Path) -> None:
    if chain[0].marker == "not-tested":
        pytest.skip(f"{chain_id(chain)} is marked not-tested: {chain[0].reason}")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in chain:
        where = f"{block.file.relative_to(ROOT)} python block {block.index}"
        exec(compile(substitute(block.code), where, "exec"), namespace)


def test_docs_have_python_blocks() -> None:
    """The collector finds the blocks (a broken fence regex would make every test vanish)."""
    assert len(python_blocks(ROOT / "README.md")) >= 3


# --- links, modules and paths ----------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _without_code(text: str) -> str:
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in _HEADING.findall(_without_code(path.read_text(encoding="utf-8")))}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_relative_links_exist(path: Path) -> None:
    broken = []
    for target in _LINK.findall(_without_code(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no file {linked})")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


def _runnable_module(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        return importlib.util.find_spec(f"{name}.__main__") is not None
    return True


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_named_commands_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    modules = set(re.findall(r"\bpython -m ([A-Za-z_][\w.]*\w)", text))
    paths = set(re.findall(r"\b(experiments/[\w./-]*\w\.(?:py|jsonl))\b", text))
    missing = [f"python -m {m}" for m in sorted(modules) if not _runnable_module(m)]
    missing += [p for p in sorted(paths) if not (ROOT / p).is_file()]
    assert not missing, f"{path.name} names commands or files that do not exist: {missing}"


def _options_table(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_probe_options_table_lists_every_flag_and_no_other():
    """The options table of docs/probing.md names exactly the flags of ``ProbeConfig`` (the
    CLI is generated from it, so a new field without a row, or a row for a removed field,
    means the table went stale)."""
    import dataclasses

    from interp.probe import ProbeConfig

    table = _options_table(ROOT / "docs" / "probing.md", "Options")
    rows = [line for line in table.splitlines() if line.startswith("| `--")]
    documented = {
        flag.removeprefix("no-").replace("-", "_")
        for row in rows
        for flag in re.findall(r"`--([a-z-]+)`", row.split("|")[1])
    }
    documented.discard("layer")  # the alias of --layers
    fields = {f.name for f in dataclasses.fields(ProbeConfig)}
    assert documented == fields, (
        f"missing rows: {sorted(fields - documented)}; rows for no field: "
        f"{sorted(documented - fields)}"
    )
