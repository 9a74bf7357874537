"""interp.artifacts: atomic files and folders, self-contained figures, library versions, one
mismatch message; and each of these mechanisms written once in the code base."""

from __future__ import annotations

import ast
import json
import re
from importlib import metadata
from pathlib import Path

import plotly.graph_objects as go
import pytest

from interp.artifacts import (
    ArtifactMismatchError,
    atomic_write,
    check_same,
    library_versions,
    publish_folder,
    write_figure,
    write_json_atomic,
)

ROOT = Path(__file__).resolve().parents[1]


def _sources(*folders: str) -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


# --- figures ---------------------------------------------------------------------------------

ONLINE_PLOTLY = re.compile(
    r"""include_plotlyjs\s*=\s*["']cdn["']|cdn\.plot\.ly|cdn\.jsdelivr|cdnjs\.|unpkg\.com"""
)


def test_no_figure_loads_plotly_from_the_internet():
    offenders = [
        f"{path}:{text[: m.start()].count(chr(10)) + 1}"
        for path, text in _sources("interp", "experiments").items()
        for m in ONLINE_PLOTLY.finditer(text)
    ]
    assert not offenders, "figures must embed plotly.js (write_figure):\n" + "\n".join(offenders)


def test_every_html_figure_goes_through_write_figure():
    offenders = [
        path
        for path, text in _sources("interp", "experiments").items()
        if path != "interp/artifacts.py" and re.search(r"\.write_html\(|\.to_html\(", text)
    ]
    assert not offenders, "write plotly figures with interp.artifacts.write_figure:\n" + "\n".join(
        offenders
    )


def test_write_figure_embeds_plotly_js(tmp_path):
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2]))
    path = write_figure(fig, tmp_path / "figures" / "line.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    library = re.search(r"<script>/\*\*\s*\* plotly\.js v.*?</script>", html, re.DOTALL)
    assert library is not None and len(library.group()) > 1_000_000  # plotly.js itself, inline
    # Outside the library (whose geo maps default to topojson files on cdn.plot.ly), the page
    # refers to no online copy and loads no script from anywhere.
    page = html.replace(library.group(), "")
    assert "cdn.plot.ly" not in page and not re.search(r"<script[^>]+src=", page)
    assert sorted(p.name for p in path.parent.iterdir()) == ["line.html"]  # no temp file left


# --- files and folders -----------------------------------------------------------------------


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "deep" / "result.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    def fail(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_publish_folder_replaces_only_a_complete_folder(tmp_path):
    final = tmp_path / "models" / "m"
    with publish_folder(final) as partial:
        assert partial == tmp_path / "models" / "m.partial" and partial.is_dir()
        (partial / "weights").write_text("v1")
    assert (final / "weights").read_text() == "v1" and not partial.exists()

    with pytest.raises(RuntimeError), publish_folder(final) as partial:
        (partial / "weights").write_text("v2, cut short")
        raise RuntimeError("crash")
    assert (final / "weights").read_text() == "v1"  # the old folder is untouched
    assert partial.is_dir()  # left behind, cleared by the next attempt

    with publish_folder(final) as partial:
        assert list(partial.iterdir()) == []
        (partial / "weights").write_text("v3")
    assert sorted(p.name for p in final.iterdir()) == ["weights"]
    assert (final / "weights").read_text() == "v3"
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]


# --- versions and settings checks ------------------------------------------------------------


def test_library_versions_are_all_known():
    versions = library_versions()
    wanted = {"python", "torch", "transformers", "transformer_lens", "sae_lens", "peft"}
    assert wanted | {"safetensors", "numpy"} <= set(versions)
    assert not [k for k, v in versions.items() if not v or v in {"?", "unknown"}]
    # transformer_lens has no __version__; the installed distribution knows it
    assert versions["transformer_lens"] == metadata.version("transformer-lens")


def test_check_same_lists_every_difference_and_the_fix():
    saved = {"lr": 0.001, "steps": 4, "config": {"top_p": 0.9, "n": 1}, "old": True}
    check_same(saved, dict(saved), where="here", fix="nothing to fix")  # same: no error
    wanted = {"lr": 0.002, "steps": 4, "config": {"top_p": 0.5, "n": 1}, "new": "x"}
    with pytest.raises(ArtifactMismatchError) as err:
        check_same(saved, wanted, where=Path("cache/run"), fix="delete it or rename")
    assert str(err.value) == (
        "cache/run was made with other settings (config.top_p: saved 0.9, requested 0.5; "
        "lr: saved 0.001, requested 0.002; new: saved <absent>, requested 'x'; "
        "old: saved True, requested <absent>); delete it or rename"
    )


def test_check_same_raises_the_callers_error():
    class AreaError(ValueError):
        pass

    with pytest.raises(AreaError, match=r"^x was made with other settings \(k: saved 1, "):
        check_same({"k": 1}, {"k": 2}, where="x", fix="f", error=AreaError)


# --- each mechanism once ---------------------------------------------------------------------


def _defined(sources: dict[str, str], names: set[str]) -> list[str]:
    return [
        f"{path} {node.name}"
        for path, text in sources.items()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef) and node.name in names
    ]


def test_each_artifact_mechanism_is_written_once():
    code = _sources("interp", "probes", "experiments")
    assert _defined(code, {"pad_left", "_pad_left"}) == ["interp/data/padding.py pad_left"]
    assert _defined(code, {"library_versions", "_library_versions"}) == [
        "interp/artifacts.py library_versions"
    ]
    assert _defined(code, {"atomic_write", "_atomic"}) == [
        "interp/artifacts.py atomic_write",  # a thin front for the one below
        "probes/io.py atomic_write",
    ]
    temp_files = [path for path, text in code.items() if "mkstemp" in text]
    assert temp_files == ["probes/io.py"]
    partial_folders = [path for path, text in code.items() if '".partial"' in text]
    assert partial_folders == ["interp/artifacts.py"]
    own_versions = [
        path
        for path, text in _sources("interp").items()
        if "__version__" in text and path != "interp/artifacts.py"
    ]
    assert own_versions == [], "record versions with interp.artifacts.library_versions"
