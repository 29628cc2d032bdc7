"""Hostile config files: bounded size, aliases and messages; never a traceback or a hang."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import MAX_ALIASES, MAX_CONFIG_BYTES, Config, Weights, config_from_mapping
from conftest import FIXTURES

HEALTHY = str(FIXTURES / "sweep" / "run-0001")
# The classic "billion laughs": nine lists of nine aliases to the list before, 316 bytes that
# stand for 9**9 strings when written out.
BOMB = (
    '[&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"],'
    + ",".join(
        f"&{name} [{','.join(['*' + previous] * 9)}]"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]"
)


def check_with(tmp_path: Path, text: str | bytes):
    path = tmp_path / "audit.yaml"
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["check", HEALTHY, "--config", str(path)])
    return result, time.monotonic() - started, path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"fail_on: {BOMB}\n", f"more than {MAX_ALIASES} aliases (line 1)"),
        (f"weights:\n  eval: {BOMB}\n", f"more than {MAX_ALIASES} aliases (line 2)"),
        ("min_gap_delta: " + "9" * 400 + "\n", "a number of 400 characters (line 1) is too long"),
        ("min_gap_delta: " + "9" * 5000 + "\n", "a number of 5000 characters (line 1) is too long"),
        ("[overfit, differs]: 1\n", "a key must be a name, not a list (line 1)"),
        ("? {fail_on: overfit}\n: 1\n", "a key must be a name, not a dict (line 1)"),
        ("train_loss: " + "x" * 60_000 + "\n", "'train_loss' must be one of last, mean, got 'xxx"),
        ("fail_on: [" + "[1, 2], " * 5000 + "]\n", "'fail_on' must be a list drawn from"),
    ],
    ids=[
        "alias bomb in fail_on",
        "alias bomb in weights",
        "400-digit integer",
        "5000-digit integer",
        "list as a key",
        "mapping as a key",
        "long string",
        "long list",
    ],
)
def test_a_hostile_config_is_exit_2_at_once_with_a_short_message(tmp_path, text, message):
    result, took, path = check_with(tmp_path, text)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}: ")
    assert message in result.stderr
    assert len(result.stderr) < 400  # the value is shown cut short, never written out whole
    assert took < 10


def test_a_config_far_larger_than_a_config_is_refused_unread(tmp_path):
    path = tmp_path / "audit.yaml"
    with open(path, "wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: 100 MB that take no disk

    result = CliRunner().invoke(main, ["check", HEALTHY, "--config", str(path)])

    assert result.exit_code == 2
    assert (
        f"error: {path}: cannot read the config file (larger than {MAX_CONFIG_BYTES // 1024} KiB"
        in result.stderr
    )


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_config_that_is_a_pipe_or_a_device_is_refused_without_waiting(tmp_path, kind):
    path = tmp_path / "audit.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes to it: opening it to read would wait for ever
    else:
        path.symlink_to("/dev/zero")  # endless

    result = CliRunner().invoke(main, ["scan", HEALTHY, "--config", str(path)])

    assert result.exit_code == 2
    assert "cannot read the config file (it is a pipe or a device, not a file)" in result.stderr


def test_the_null_device_is_an_empty_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".ckpt-audit.yaml").write_text("min_gap_delta: 0.5\n")

    result = CliRunner().invoke(main, ["config", "--config", os.devnull])

    assert result.exit_code == 0, result.stderr
    assert "min_gap_delta: 0.1\n" in result.stdout


def test_a_yaml_merge_key_is_read(tmp_path):
    text = "weights:\n  <<: {eval: 0.4, gap: 0.2}\n  gap: 0.25\n"
    (tmp_path / "m.yaml").write_text(text)

    result = CliRunner().invoke(main, ["config", "--config", str(tmp_path / "m.yaml")])

    assert result.exit_code == 0, result.stderr
    assert "weights:\n  eval: 0.4\n  gap: 0.25\n  perplexity: 0.1\n" in result.stdout


def test_a_few_anchors_and_aliases_are_fine(tmp_path):
    text = "weights: {eval: &w 0.4, gap: *w}\nfail_on: &f [overfit]\n"
    result, _, _ = check_with(tmp_path, text)

    assert result.exit_code == 0, result.stderr


def test_a_key_given_twice_beside_a_merge_is_still_refused(tmp_path):
    text = "weights:\n  <<: {eval: 0.4}\n  gap: 0.2\n  gap: 0.3\n"
    result, _, _ = check_with(tmp_path, text)

    assert result.exit_code == 2
    assert "'gap' is given twice (line 4)" in result.stderr


def test_huge_numbers_given_in_code_are_named_not_written_out():
    from auditor.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"min_gap_delta": 10**400})
    assert "'min_gap_delta' must be a finite number, got a number of about 401 digits" in str(
        caught.value
    )
    with pytest.raises(ConfigError, match="must be a finite number"):
        Config().replace(weight_eval=-(10**5000))
    assert config_from_mapping({"weights": {"eval": 10**20}}).weights == Weights(eval=1e20)
