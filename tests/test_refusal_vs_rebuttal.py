"""experiments/refusal_vs_rebuttal.py end to end on the tiny model (mechanics, not results)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from interp.data.transcripts import load_transcripts

SCRIPT = Path(__file__).parent.parent / "experiments" / "refusal_vs_rebuttal.py"


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("refusal_vs_rebuttal", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["refusal_vs_rebuttal"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _config(experiment, out, **kw):
    return experiment.FollowUpConfig(
        model="tiny-random",
        max_scenarios=2,
        max_new_tokens=3,
        device="cpu",
        progress=False,
        out=str(out),
        **kw,
    )


def test_runs_every_condition_and_wording_and_writes_its_outputs(experiment, tmp_path, capsys):
    results = experiment.run(_config(experiment, tmp_path))
    # 2 scenarios x (1 natural + 2 refusal wordings + 2 rebuttal wordings) follow-ups.
    assert results["n_scenarios"] == 2 and results["n_followups"] == 10
    assert set(results["by_condition"]) == {"natural", "refusal", "rebuttal"}
    natural = results["by_condition"]["natural"]["undesired"]
    assert natural["n"] == 2 and 0 <= natural["low"] <= natural["high"] <= 1
    assert results["judge"] == "rule" and results["config"]["max_scenarios"] == 2
    refusing = results["refusing"]
    assert set(refusing) == {"first turn", *(f"follow-up/{c}" for c in results["by_condition"])}
    assert refusing["follow-up/refusal"]["n"] == 4 and refusing["first turn"]["n"] == 2
    judged = load_transcripts(tmp_path / "judged.jsonl")
    assert len(judged) == 10 and all(t.label in (0, 1) for t in judged)
    assert all(len(t.messages) == 5 for t in judged)  # system, pressure, reply, follow-up, reply
    for name in ("table.txt", "rates.html", "results.json", "first_turn.jsonl"):
        assert (tmp_path / name).is_file()
    assert "condition" in capsys.readouterr().out

    # A second run reuses every generation (resume) and can judge them another way.
    before = (tmp_path / "followups.jsonl").read_text()
    again = experiment.run(_config(experiment, tmp_path, judge="llm", llm_mode="choice"))
    assert (tmp_path / "followups.jsonl").read_text() == before
    assert again["judge"] == "llm:tiny-random:choice"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["judge"] == again["judge"]


def test_bad_input_is_an_error_not_a_traceback(experiment, tmp_path, capsys):
    assert experiment.main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
