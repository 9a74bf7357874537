"""The follow-up protocol (interp.text.followup, run by experiments/refusal_vs_rebuttal.py)
end to end on the tiny model (mechanics, not results)."""

import json
import runpy
from pathlib import Path

from interp.data.transcripts import load_transcripts
from interp.text.followup import FollowUpConfig, run_follow_up

SCRIPT = Path(__file__).parent.parent / "experiments" / "refusal_vs_rebuttal.py"


def _config(out, **kw):
    return FollowUpConfig(
        model="tiny-random",
        max_scenarios=2,
        max_new_tokens=3,
        device="cpu",
        progress=False,
        out=str(out),
        **kw,
    )


def test_runs_every_condition_and_wording_and_writes_its_outputs(tmp_path, capsys):
    results = run_follow_up(_config(tmp_path))
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
    again = run_follow_up(_config(tmp_path, judge="llm", llm_mode="choice"))
    assert (tmp_path / "followups.jsonl").read_text() == before
    assert again["judge"] == "llm:tiny-random:choice"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["judge"] == again["judge"]


def test_bad_input_is_an_error_not_a_traceback(tmp_path, capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_study_package_picks_held_out_prompts_and_tabulates():
    from interp.data.scenarios import load_bank
    from interp.data.split import split_bank
    from interp.rebuttal.finetune import held_out_prompts, table
    from interp.rebuttal.patching import PatchExperimentConfig

    prompts = held_out_prompts(4)
    _, held = split_bank(load_bank())
    assert len(prompts) == 4 and {p.id for p in prompts} <= set(held)
    assert len({p.meta["domain"] for p in prompts}) == 4  # one per domain while they last
    text = table({"base": {"L3": 0.61, "layer0": 0.5}, "refusal": {"L3": None, "layer0": 0.5}}, [3])
    assert text.splitlines()[2].split("|")[1].strip() == "0.610"
    assert "-" in text.splitlines()[3].split("|")[1]
    assert PatchExperimentConfig().metric == "logprob"
