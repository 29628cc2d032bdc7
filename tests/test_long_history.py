"""long_history: a state file parsed in pieces audits exactly as one parsed whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor import long_history
from auditor.api import audit
from auditor.fastjson import loads
from auditor.pair import digest_history
from auditor.storage import for_path
from conftest import FIXTURES

STATE = "trainer_state.json"
BLOCK = 300
ALL_STATE_FILES = sorted(FIXTURES.rglob(STATE))


def _in_pieces(path: Path) -> dict | None:
    blocks = for_path(str(path)).stream(str(path), BLOCK)
    return long_history.parse_in_pieces(blocks)


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse every file in pieces, a few hundred bytes at a time, so the bundled runs' files
    are cut into many pieces, entries straddling the blocks."""
    monkeypatch.setattr(long_history, "PIECEWISE_FROM", 0)
    monkeypatch.setattr(long_history, "BLOCK_BYTES", BLOCK)


def test_every_bundled_run_audits_the_same_in_pieces(
    tiny_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = sorted(str(p) for p in FIXTURES.iterdir() if p.is_dir())
    pieces = audit(*folders, jobs=1).to_dict()
    monkeypatch.setattr(long_history, "PIECEWISE_FROM", 2**62)
    whole = audit(*folders, jobs=1).to_dict()
    assert pieces == whole


@pytest.mark.parametrize("path", ALL_STATE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_trainer_layout_is_parsed_in_pieces_to_the_same_digest(
    tiny_blocks: None, path: Path, tmp_path: Path
) -> None:
    document = loads(path.read_bytes())
    if not isinstance(document, dict) or not isinstance(document.get("log_history"), list):
        pytest.skip("not a state file with a history (a deliberately broken fixture)")
    if not document["log_history"]:
        pytest.skip("an empty history is written on one line: parsed whole")
    # As the Trainer writes it (some fixtures are re-indented on purpose).
    written = tmp_path / STATE
    written.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    found = _in_pieces(written)
    assert found is not None
    assert {k: v for k, v in found.items() if k != "log_history"} == {
        k: v for k, v in document.items() if k != "log_history"
    }
    assert digest_history(found["log_history"]) == digest_history(document["log_history"])
    assert len(found["log_history"]) == len(document["log_history"])


@pytest.mark.parametrize("indent", [None, 4, "\t"])
def test_other_layouts_are_left_to_the_whole_parse(
    tiny_blocks: None, indent: int | str | None, tmp_path: Path
) -> None:
    source = FIXTURES / "examples" / "lm_overfit_full" / STATE
    written = tmp_path / STATE
    written.write_text(json.dumps(json.loads(source.read_text()), indent=indent))
    assert _in_pieces(written) is None


def test_a_cut_file_is_left_to_the_whole_parse(tiny_blocks: None, tmp_path: Path) -> None:
    source = FIXTURES / "examples" / "lm_overfit_full" / STATE
    written = tmp_path / STATE
    text = json.dumps(json.loads(source.read_text()), indent=2, sort_keys=True)
    written.write_text(text[: len(text) * 2 // 3])
    assert _in_pieces(written) is None
