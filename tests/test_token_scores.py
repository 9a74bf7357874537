import pytest
import torch

from interp.cache import cache_activations
from interp.hooks import hook_name
from interp.token_scores import score_tokens, write_token_html
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
