"""Shared fixtures: paths to the bundled Trainer output folders and copies to break."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXAMPLES = FIXTURES / "examples"
#: One run of each other training framework, written by its own writer.
FRAMEWORKS = FIXTURES / "frameworks"


def drop_evaluations(run: Path) -> Path:
    """Rewrite every trainer_state.json of `run` without its evaluations, in the Trainer's
    layout: a run that was never evaluated. Returns `run`."""
    for state in run.rglob("trainer_state.json"):
        data = json.loads(state.read_text())
        data["log_history"] = [e for e in data["log_history"] if "eval_loss" not in e]
        state.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return run


def expected_rows() -> list[tuple[str, dict[str, Any], int]]:
    """Return (run folder, expectation, training number) per report row fixtures/EXPECTED.yaml
    describes: a folder holding several trainings lists one expectation per training."""
    expected = yaml.safe_load((FIXTURES / "EXPECTED.yaml").read_text())
    return [
        (name, want, number)
        for name, wants in expected.items()
        for number, want in enumerate(wants if isinstance(wants, list) else [wants], start=1)
    ]


def extra(*modules: str) -> None:
    """Import what a test needs from an optional extra. .ci/run installs every extra, so under
    CI a missing one is a failure; the skip only spares developer machines without it."""
    import importlib

    ci = os.environ.get("CI", "").lower() in ("true", "1", "yes")
    for module in modules:
        if ci:
            importlib.import_module(module)
        else:
            pytest.importorskip(module)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def copy_run(tmp_path: Path):
    """Return a function that copies a fixture run into tmp_path (writable) and returns it."""

    def copy(name: str, dest: str | None = None) -> Path:
        source = FIXTURES / name
        target = tmp_path / (dest or Path(name).name)
        shutil.copytree(source, target)
        for path in [target, *target.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return target

    return copy
