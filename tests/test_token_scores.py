from pathlib import Path

import pytest
import torch

from interp.cache import cache_activations
from interp.hooks import hook_name
from interp.probe.generations import ProbeGenerationsConfig, probe_generations
from interp.probe.token_scores import score_tokens, write_token_html
from probes import LogisticProbe, ProbeMeta, ProbeMismatchError


def test_per_token_scores_average_to_the_pooled_score(tiny_model, small_dataset, tmp_path):
    hook = hook_name(1)
    acts = cache_activations(
        tiny_model, small_dataset, [hook], "answer", cache_dir=tmp_path, progress=False
    )
    y = torch.tensor([t.label for t in small_dataset])
    meta = ProbeMeta(tiny_model.name, tiny_model.fingerprint, hook, "answer")
    probe = LogisticProbe(c=0.1, meta=meta).fit(acts[hook], y)
    sample = small_dataset[:5]
    scored = score_tokens(tiny_model, probe, sample, cache_dir=tmp_path, progress=False)
    pooled = probe.score(acts[hook][:5])
    torch.testing.assert_close(torch.tensor([s.mean for s in scored]), pooled, atol=1e-4, rtol=1e-4)
    assert "".join(scored[0].tokens).strip() == sample[0].reply.split("Answer: ")[1]

    page = tmp_path / "page.html"
    write_token_html(page, [(sample[0], scored[0], "caption <b>")], "title")
    text = page.read_text()
    assert "caption &lt;b&gt;" in text and text.count("<span") == len(scored[0].tokens)

    probe.meta.model_fingerprint = "another model"
    with pytest.raises(ProbeMismatchError, match="model_fingerprint"):
        score_tokens(tiny_model, probe, sample, cache_dir=tmp_path, progress=False)


def test_probe_generations_experiment_reports_auroc_with_intervals(
    tiny_model, small_dataset, tmp_path, capsys
):
    """interp.probe.generations (experiments/probe_generations.py) on judged transcripts:
    AUROC against the judge's rbd and answer_undesired with scenario-bootstrap intervals, and
    the disagreement page; a missing probe is an error line from the script."""
    import json
    import runpy

    from interp.data.transcripts import write_transcripts
    from interp.text.judging import Verdict, apply_verdicts

    hook = hook_name(1)
    acts = cache_activations(
        tiny_model, small_dataset, [hook], "answer", cache_dir=tmp_path, progress=False
    )
    y = torch.tensor([t.label for t in small_dataset])
    meta = ProbeMeta(tiny_model.name, tiny_model.fingerprint, hook, "answer")
    run = tmp_path / "run"
    LogisticProbe(c=0.1, meta=meta).fit(acts[hook], y).save(run / "probes" / "L1")
    data = small_dataset[:12]
    verdicts = [
        Verdict(False, "unclear", ("yes", "no", "unclear")[i % 3], "test") for i in range(12)
    ]
    judged = tmp_path / "judged.jsonl"
    write_transcripts(judged, apply_verdicts(data, verdicts))

    config = ProbeGenerationsConfig(
        run=str(run), layer=1, judged=str(judged), model="tiny-random", device="cpu"
    )
    returned = probe_generations(config)
    results = json.loads((tmp_path / "probe_vs_judge.json").read_text())
    assert returned == results
    assert results["n"] == 12 and results["n_rbd"] == 4 and results["n_answer_decided"] == 8
    for key in ("auroc_vs_rbd", "auroc_vs_answer_undesired"):
        r = results[key]
        assert 0 <= r["low"] <= r["high"] <= 1 and 0 <= r["auroc"] <= 1
    assert (tmp_path / "disagreements.html").is_file()
    script = Path(__file__).parent.parent / "experiments" / "probe_generations.py"
    main = runpy.run_path(str(script))["main"]
    argv = ["--run", str(run), "--judged", str(judged), "--device", "cpu"]
    assert main([*argv, "--layer", "7"]) == 2  # no probe saved for that layer
    assert "error:" in capsys.readouterr().err
