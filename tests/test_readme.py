"""The README's examples cannot drift: its shell examples on the fixtures are run and their output
compared with what the README shows (abridged blocks line by line), and so is the pandas example."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import pytest

from conftest import FIXTURES

REPO = FIXTURES.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def shell_examples() -> list[tuple[str, list[str]]]:
    """Return (command, lines shown) of every README block that runs a command on the fixtures."""
    found = []
    for block in re.findall(r"```\n(\$ .*?)```", README, re.DOTALL):
        command, *shown = block.splitlines()
        if "fixtures/" in command:
            found.append((command[2:], shown))
    return found


EXAMPLES = shell_examples()


def test_the_readme_shows_the_formats_on_the_fixtures():
    commands = " ".join(command for command, _ in EXAMPLES)
    for wanted in ("scan fixtures/ ", "show ", "--format csv", "--format markdown", "junit"):
        assert wanted in commands, wanted


def matches(shown: list[str], printed: list[str]) -> str | None:
    """Return why `printed` does not hold the `shown` lines in order (... is any text), or
    None when it does."""
    at = 0
    for line in shown:
        if line.strip() == "...":
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in line.rstrip().split("...")))
        while at < len(printed) and not pattern.fullmatch(printed[at].rstrip()):
            at += 1
        if at == len(printed):
            return f"not printed (in this order): {line!r}"
        at += 1
    return None


def test_the_comparison_fails_on_a_line_not_printed():
    assert matches(["a...c", "...", "x"], ["abc", "y", "x"]) is None
    assert matches(["a...c"], ["abd"]) is not None
    assert matches(["x", "abc"], ["abc", "x"]) is not None


@pytest.mark.parametrize(("command", "shown"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_a_readme_example_prints_what_the_readme_shows(command, shown):
    # The console script of this environment, as a reader's shell would find it.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    env = {**os.environ, "PATH": path}
    env.pop("COLUMNS", None)
    done = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 1), done.stderr
    printed = done.stdout.rstrip("\n").splitlines()
    if re.search(r"#.*\babridged\b", command):
        assert matches(shown, printed) is None, matches(shown, printed)
    else:
        assert [line.rstrip() for line in printed] == [line.rstrip() for line in shown]


def test_the_pandas_example_prints_the_numbers_it_shows(monkeypatch):
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", README, re.DOTALL) if "to_frame(" in b
    )
    code, shown = block.rstrip("\n").rsplit("\n", 1)
    assert shown.startswith("# ")
    monkeypatch.chdir(REPO)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {})
    assert printed.getvalue().strip() == shown[2:]


def test_ci_runs_the_readme_test_command():
    quick_start = README.split("## Quick start", 1)[1]
    test = re.findall(r"```\n(.*?)```", quick_start, re.DOTALL)[0].splitlines()[1]
    assert "pytest" in test
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test in (line.removesuffix(" || exit") for line in ci)
