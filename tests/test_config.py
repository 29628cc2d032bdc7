"""The YAML config: SPEC defaults, a commented file that loads back, errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import Config, Weights, config_from_mapping, load_config, to_yaml
from auditor.errors import ConfigError
from conftest import EXAMPLES, FIXTURES

FLAGGED = str(FIXTURES / "real_overfit_flagged")


def write(tmp_path: Path, text: str, name: str = "audit.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_spec():
    config = Config()
    assert config.weights == Weights(eval=0.5, gap=0.3, perplexity=0.1)
    assert (config.perplexity_cap, config.improvement_bonus, config.min_gap_delta) == (
        20.0,
        -0.1,
        0.10,
    )
    assert (config.eval_key, config.train_loss, config.fail_on) == (
        None,
        "last",
        ("overfit", "no_candidates"),
    )
    assert (config.noise_k, config.task_metrics, config.metrics) == (2.0, True, {})
    assert config.allow_unreadable is False


def test_the_printed_config_is_commented_and_loads_back(tmp_path):
    text = to_yaml(Config())
    assert "# Weights of the score's terms" in text
    assert all(f"\n{key}:" in text for key in Config().to_dict() if key != "weights")
    assert load_config(write(tmp_path, text)) == Config()


def test_a_changed_config_round_trips(tmp_path):
    config = Config(
        weights=Weights(eval=1.0, gap=0.0, perplexity=0.25),
        perplexity_cap=50.0,
        improvement_bonus=0.0,
        min_gap_delta=0.05,
        eval_key="eval_in_domain_loss",
        train_loss="mean",
        noise_k=None,
        task_metrics=False,
        metrics={"eval_bleu": "higher", "eval_gen_len": "ignore"},
        fail_on=("overfit", "differs"),
        allow_unreadable=True,
    )
    assert load_config(write(tmp_path, to_yaml(config))) == config


def test_a_metric_may_be_named_without_its_eval_prefix(tmp_path):
    config = load_config(write(tmp_path, "metrics: {bleu: higher, eval_wer: lower}\nnoise_k: 3\n"))
    assert config.metrics == {"eval_bleu": "higher", "eval_wer": "lower"}
    assert config.noise_k == 3.0


def test_a_partial_file_keeps_the_other_defaults(tmp_path):
    config = load_config(write(tmp_path, "weights:\n  gap: 0.5\nmin_gap_delta: 1e-3\n"))
    assert config.weights == Weights(eval=0.5, gap=0.5, perplexity=0.1)
    # YAML 1.1 would read 1e-3 as a string; people mean a number.
    assert config.min_gap_delta == 0.001
    assert config.perplexity_cap == 20.0


def test_an_empty_file_is_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing yet\n")) == Config()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("min_gap: 0.1\n", "unknown key 'min_gap'"),
        ("weights:\n  loss: 0.5\n", "unknown key 'weights.loss'"),
        ("weights: 0.5\n", "'weights' must be a mapping"),
        ("weights:\n  eval: high\n", "'weights.eval' must be a number"),
        ("weights:\n  gap: -0.3\n", "'weights.gap' must be 0 or more"),
        ("perplexity_cap: 0\n", "'perplexity_cap' must be greater than 0"),
        ("perplexity_cap: .inf\n", "'perplexity_cap' must be a finite number"),
        ("min_gap_delta: true\n", "'min_gap_delta' must be a number"),
        ("min_gap_delta: -0.1\n", "'min_gap_delta' must be 0 or more"),
        ("improvement_bonus: '-0.1'\n", "'improvement_bonus' must be a number"),
        ("eval_key: 3\n", "'eval_key' must be a key name"),
        ("eval_key: ''\n", "'eval_key' must be a key name"),
        ("train_loss: median\n", "'train_loss' must be one of last, mean"),
        ("fail_on: [overfit, error]\n", "'fail_on' must be a list drawn from"),
        ("fail_on: {overfit: 1}\n", "'fail_on' must be a list drawn from"),
        ("allow_unreadable: yes please\n", "'allow_unreadable' must be true or false"),
        ("noise_k: -1\n", "'noise_k' must be 0 or more"),
        ("noise_k: two\n", "'noise_k' must be a number"),
        ("task_metrics: 1\n", "'task_metrics' must be true or false"),
        ("metrics: [eval_bleu]\n", "'metrics' must map log keys to higher, lower or ignore"),
        ("metrics: {eval_bleu: up}\n", "'metrics.eval_bleu' must be one of higher, lower, ignore"),
        ("- overfit\n", "the config must be a mapping"),
        ("min_gap_delta: 0.1\nmin_gap_delta: 0.2\n", "'min_gap_delta' is given twice (line 2)"),
        ("weights: [\n", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_naming_the_key_and_the_file(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert named in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_a_missing_or_undecodable_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(binary)


def test_the_single_string_fail_on_is_a_list():
    assert config_from_mapping({"fail_on": "differs"}).fail_on == ("differs",)


def test_replace_validates_and_names_the_command_line():
    assert Config().replace(weight_gap=0.0).weights.gap == 0.0
    with pytest.raises(ConfigError, match="command line: 'eval_key'"):
        Config().replace(eval_key="")


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def test_cli_bad_config_is_exit_2_naming_the_key_and_file(tmp_path):
    path = write(tmp_path, "weights:\n  eval: 0.5\n  gapp: 0.3\n")
    result = invoke("scan", FLAGGED, "--config", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "weights.gapp" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_the_working_directory_config_is_picked_up(tmp_path, monkeypatch):
    write(tmp_path, "min_gap_delta: 0.5\n", name=".ckpt-audit.yaml")
    monkeypatch.chdir(tmp_path)
    result = invoke("check", FLAGGED, "--format", "json")
    # run-0000's eval-only pick overfits 0.146 more than the scorer's: under 0.5, not flagged.
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"]["min_gap_delta"] == 0.5
    assert report["runs"][0]["verdict"] == "differs"
    printed = invoke("config")
    assert printed.exit_code == 0
    assert "\nmin_gap_delta: 0.5\n" in printed.stdout


def test_an_explicit_config_wins_over_the_working_directory_one(tmp_path, monkeypatch):
    write(tmp_path, "min_gap_delta: 0.5\n", name=".ckpt-audit.yaml")
    other = write(tmp_path, "min_gap_delta: 0.1\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("check", FLAGGED, "--config", str(other), "-q")
    assert result.exit_code == 1
    assert result.stderr == ""


def test_fail_on_decides_which_findings_fail_check(tmp_path):
    path = write(tmp_path, "fail_on: [overfit, differs]\n")
    run = str(EXAMPLES / "lm_epoch_strategy")
    assert invoke("check", run, "-q").exit_code == 0
    result = invoke("check", run, "--config", str(path))
    assert result.exit_code == 1
    assert "gate: FAIL" in result.stderr and "lm_epoch_strategy" in result.stderr


def test_train_loss_mean_reaches_the_pairing(tmp_path):
    path = write(tmp_path, "train_loss: mean\n")
    last = json.loads(invoke("show", FLAGGED, "--format", "json", "-q").stdout)
    mean = json.loads(
        invoke("show", FLAGGED, "--format", "json", "-q", "--config", str(path)).stdout
    )
    assert mean["config"]["train_loss"] == "mean"
    pairs = zip(last["runs"][0]["checkpoints"], mean["runs"][0]["checkpoints"], strict=True)
    assert any(a["train_loss"] != b["train_loss"] for a, b in pairs)


def test_weights_change_the_score(tmp_path):
    path = write(
        tmp_path, "weights: {eval: 1.0, gap: 0.0, perplexity: 0.0}\nimprovement_bonus: 0\n"
    )
    report = json.loads(
        invoke("show", FLAGGED, "--format", "json", "-q", "--config", str(path)).stdout
    )
    for row in report["runs"][0]["checkpoints"]:
        if row["score"] is not None:
            assert row["score"] == pytest.approx(row["eval_loss"])
    # With only the eval loss weighted, the scorer agrees with eval-only selection.
    assert report["runs"][0]["verdict"] == "agree"
