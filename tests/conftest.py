"""Shared fixtures: paths to the bundled Trainer output folders and copies to break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXAMPLES = FIXTURES / "examples"


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
