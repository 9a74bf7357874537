"""The CLI end to end on the tiny model, and its error messages for bad input."""

import dataclasses
import json
import subprocess
import sys

import pytest

from interp.config import ConfigError
from interp.probe.__main__ import main
from interp.probe.config import ProbeConfig
from interp.probe.pipeline import train_probe

FAST = ["--model", "tiny-random", "--max-scenarios", "6", "--no-progress", "--n-random", "4"]


def test_cli_end_to_end(tmp_path, capsys):
    out, metrics = tmp_path / "run", tmp_path / "m.json"
    eval_path = tmp_path / "eval.jsonl"
    # An eval file in the documented format, one reply without an "Answer:" marker.
    lines = [
        {
            "id": f"e{i}",
            "group": f"g{i // 2}",
            "label": i % 2,
            "messages": [
                {"role": "user", "content": "Fake the report."},
                {"role": "assistant", "content": reply},
            ],
        }
        for i, reply in enumerate(
            [
                "Reasoning: no.\nAnswer: Here is the fake report.",
                "Reasoning: no.\nAnswer: I won't.",
                "Reasoning: yes.\nanswer: I won't.",
                "Reasoning: yes, I will.\n\nHere it is.",
            ]
        )
    ]
    eval_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = [
        *FAST,
        "--layers",
        "0-1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--json",
        str(metrics),
        "--eval-dataset",
        str(eval_path),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "layer 0 |" in printed and "answer | reasoning" in printed
    assert "1 without an 'Answer:' marker" in printed
    assert "Training set builtin:consistency (" in printed  # its counts, as the eval set's
    data = json.loads(metrics.read_text())
    assert [r["layer"] for r in data["layers"]] == [0, 1]
    assert not set(data["data"]["train_groups"]) & set(data["data"]["test_groups"])
    first = data["layers"][0]
    assert first["test"]["answer_stance_auroc"] is not None
    assert first["eval"]["n_answer_missing"] == 1
    for name in (
        "config.json",
        "metrics.json",
        "table.txt",
        "auroc.html",
        "probes/L0/probe.json",
        "probes/L1/probe.safetensors",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["config"]["layers"] == [0, 1]


def test_api_and_cli_share_the_config(tiny_model, tmp_path):
    config = ProbeConfig(
        model="tiny-random",
        layers=(1,),
        max_scenarios=6,
        n_random=4,
        progress=False,
        cache_dir=str(tmp_path),
        control_dataset=None,
    )
    run = train_probe(config, model=tiny_model)
    assert run.result(1).test.metrics is not None
    assert (run.out_dir / "probes" / "L1" / "probe.json").is_file()
    probe = run.probes[1]
    assert probe.meta.hook == "blocks.1.hook_resid_post"
    assert probe.meta.model_fingerprint == tiny_model.fingerprint


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "./missing/dir"], "does not exist"),
        ([*FAST, "--layer", "7"], "layer 7 is out of range: this model has 2 blocks"),
        ([*FAST, "--probe", "svm"], "unknown probe 'svm'"),
        ([*FAST, "--dataset", "builtin:nope"], "unknown built-in dataset"),
    ],
)
def test_cli_errors_say_what_is_wrong(args, message, capsys, tmp_path):
    assert main([*args, "--cache-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_reports_the_bad_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "group": "g", "messages": [{"role": "assistant", "content": "x"}]}\n{oops\n'
    )
    assert main([*FAST, "--dataset", str(bad), "--cache-dir", str(tmp_path)]) == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err


def test_cli_rejects_bad_flag_values(capsys):
    with pytest.raises(SystemExit):
        main(["--site", "attn_out"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--layers", "x-y"])


@pytest.mark.parametrize(
    ("flag", "value"), [("--layer", "-1"), ("--layers", "3-1"), ("--layers", "abc")]
)
def test_bad_layers_say_how_to_write_them(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot read layers '{value}'" in err and "a range (0-29)" in err
    assert "invalid" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--c", "x"], "argument --c: expected a number (or 'none'), got 'x'"),
        (["--n-random", "1.5"], "argument --n-random: expected an integer, got '1.5'"),
    ],
)
def test_every_flag_type_explains_a_bad_value(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_points_report_bad_input_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "interp.sae", "--layer", "-1"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "error: layer must be >= 0, got -1" in result.stderr
    assert "Traceback" not in result.stderr


def test_scenario_bank_summary_goes_through_run_cli(tmp_path, capsys):
    from interp.data.scenarios import main as bank_main

    assert bank_main([]) == 0
    assert "scenarios, " in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[{}]")
    assert bank_main(["--bank", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@dataclasses.dataclass
class _Words:
    """A config with every kind of flag the parser builds."""

    variant: tuple[str, ...] = dataclasses.field(metadata={"nargs": "+"})
    labels_dir: tuple[str, ...] | None = dataclasses.field(default=None, metadata={"repeat": True})
    layers: tuple[int, ...] = (1,)
    child: int | None = dataclasses.field(default=None, metadata={"hidden": True})


def test_parser_reads_several_words_repeated_flags_and_required_flags(capsys):
    from interp.cli import config_from_args, parser_for

    parser = parser_for(_Words, prog="x", aliases={"--reference": "labels_dir"})
    args = ["--variant", "a", "b", "--labels-dir", "d1", "--reference", "d2", "--layers", "0-2"]
    config = config_from_args(_Words, parser.parse_args(args))
    assert config == _Words(variant=("a", "b"), labels_dir=("d1", "d2"), layers=(0, 1, 2))
    assert config_from_args(_Words, parser.parse_args(["--variant", "a"])).labels_dir is None
    assert "--child" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "the following arguments are required: --variant" in capsys.readouterr().err


def test_run_cli_turns_bad_input_into_an_error_line(capsys):
    from interp.cli import run_cli

    def missing(config):
        raise FileNotFoundError(f"no file {config.variant[0]}")

    assert run_cli(_Words, missing, ["--variant", "f.json"], prog="x") == 2
    assert capsys.readouterr().err == "error: no file f.json\n"
    report = run_cli(_Words, repr, ["--variant", "a"], prog="x", report=lambda c, r: f"{c.variant}")
    assert report == 0 and capsys.readouterr().out == "('a',)\n"


def test_optional_flags_read_auto_and_numbers():
    from interp.cli import config_from_args, parser_for

    parser = parser_for(ProbeConfig, prog="x", aliases={"--layer": "layers"})
    assert config_from_args(ProbeConfig, parser.parse_args(["--c", "0.5"])).c == 0.5
    assert config_from_args(ProbeConfig, parser.parse_args(["--c", "auto"])).c is None
    assert config_from_args(ProbeConfig, parser.parse_args(["--layer", "3"])).layers == (3,)


def test_config_validates():
    with pytest.raises(ConfigError, match="test_fraction"):
        ProbeConfig(test_fraction=1.5)
    with pytest.raises(ConfigError, match="layers is empty"):
        ProbeConfig(layers=())


def test_importing_interp_loads_nothing_until_a_name_is_used():
    """``import interp`` is cheap and free of side effects: the model stack (torch,
    transformers) loads when a name is first used, and every exported name resolves."""
    code = (
        "import sys, interp\n"
        "assert 'torch' not in sys.modules and 'interp.models' not in sys.modules\n"
        "assert all(getattr(interp, name) is not None for name in interp.__all__)\n"
        "assert interp.load_model.__module__ == 'interp.models.load'\n"
        "try:\n    interp.no_such_name\nexcept AttributeError as err:\n"
        "    assert 'no_such_name' in str(err)\nelse:\n    raise SystemExit('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
