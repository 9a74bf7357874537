"""The cross-dataset matrix on the tiny model, over the fixture copies of the public sets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from interp.config import ConfigError
from interp.probe.matrix import MatrixConfig, load_matrix, run_matrix
from interp.probe.matrix.__main__ import main
from interp.probe.matrix.report import format_table

APOLLO = Path(__file__).parent / "data" / "external" / "deception-detection"
SETS = (
    "builtin:consistency",
    f"builtin:instructed-pairs={APOLLO}",
    f"builtin:apollo-roleplaying={APOLLO}",
)


def _config(root: Path, sets=SETS, **overrides) -> MatrixConfig:
    settings = dict(
        model="tiny-random",
        sets=sets,
        control_dataset=f"builtin:apollo-alpaca={APOLLO}",
        layers=(1,),
        max_groups=4,
        n_random=4,
        device="cpu",
        cache_dir=str(root / "cache"),
        out=str(root / "out"),
        progress=False,
    )
    return MatrixConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def matrix(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    return run_matrix(_config(root), model=tiny_model), root


def test_every_train_test_pair_has_a_cell_with_its_controls(matrix):
    run, _ = matrix
    names = ["consistency", "instructed-pairs", "apollo-roleplaying"]
    assert [s.name for s in run.sets] == names
    assert len(run.cells) == 9
    sizes = {s.name: s for s in run.sets}
    for cell in run.cells:
        own = sizes[cell.test]
        # a set's own cell is its held-out scenarios; another set is scored whole
        assert cell.n == (own.n_test if cell.train == cell.test else own.n)
        assert cell.auroc is not None and cell.auroc_low <= cell.auroc <= cell.auroc_high
        assert 0 <= cell.recall_at_1pct_control <= 1 and cell.layer0_auroc is not None
        assert 0.5 <= cell.random_auroc_p95 <= 1
    stances = run.cell("apollo-roleplaying", "consistency", 1).stances
    assert set(stances) == {"answer=comply", "reasoning=ethical"}
    assert run.cell("consistency", "instructed-pairs", 1).stances == {}
    assert sizes["consistency"].tokens == "answer" and sizes["instructed-pairs"].tokens == "reply"
    assert run.control_n == 2


def test_the_run_folder_table_and_figure(matrix):
    run, root = matrix
    out = root / "out"
    table = (out / "table.txt").read_text()
    assert table.startswith("Cross-dataset probe matrix") and "AUROC at layer 1" in table
    assert table.count("\n    1 | ") == 9  # one line per cell
    html = (out / "matrix.html").read_text()
    assert "Plotly.newPlot" in html and not re.search(r"<script[^>]+src=", html)  # offline
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["sets"] == list(SETS)
    again = load_matrix(out)
    assert again.cells == run.cells and format_table(again) == format_table(run)


def test_adding_a_set_costs_only_its_forward_passes(matrix, tiny_model, count_passes):
    _, root = matrix
    calls = count_passes(tiny_model)
    sets = (*SETS, f"builtin:apollo-ai-liar={APOLLO}")
    run = run_matrix(_config(root, sets=sets, out=str(root / "out2")), model=tiny_model)
    # AI liar: 14 transcripts, in one batch; its control-set selection (reply) is cached
    assert calls["n"] == 1
    cell = run.cell("apollo-ai-liar", "apollo-ai-liar", 1)
    assert set(cell.stances) <= {"instruction=deceive", "answer_text=answer"}
    assert len(run.cells) == 16


def test_bad_sets_fail_before_the_model_loads(tmp_path, capsys):
    with pytest.raises(ConfigError, match="each once"):
        MatrixConfig(sets=("builtin:consistency", "builtin:consistency"))
    code = main(["--sets", f"builtin:apollo-roleplaying={tmp_path}", "--model", "no-such-model"])
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset.yaml does not exist" in err and "git clone" in err
    code = main(["--sets", "builtin:benign", "--model", "tiny-random"])
    assert code == 2 and "both labels" in capsys.readouterr().err
