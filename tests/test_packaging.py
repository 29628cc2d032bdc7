"""What an install brings: pandas always (to_frame), accelerate with the transformers extra."""

from __future__ import annotations

from importlib.metadata import requires

from packaging.requirements import Requirement


def requirements(extra: str | None) -> set[str]:
    """Return the names of the installed distribution's requirements for `extra` (None: plain)."""
    found = set()
    for line in requires("checkpoint-auditor") or []:
        requirement = Requirement(line)
        wanted = {"extra": extra or ""}
        if requirement.marker is None:
            if extra is None:
                found.add(requirement.name.lower())
        elif extra is not None and requirement.marker.evaluate(wanted):
            found.add(requirement.name.lower())
    return found


def test_a_plain_install_brings_pandas_for_to_frame():
    assert {"pandas", "click", "orjson", "pyyaml"} <= requirements(None)


def test_the_transformers_extra_brings_what_a_trainer_needs_besides_torch():
    assert {"transformers", "accelerate"} <= requirements("transformers")


def test_the_plot_extra_brings_matplotlib():
    assert "matplotlib" in requirements("plot")


def test_the_test_extra_brings_the_extras_and_servers_the_tests_use():
    assert {"moto", "gcp-storage-emulator"} <= requirements("test")
    itself = [
        Requirement(line)
        for line in requires("checkpoint-auditor") or []
        if Requirement(line).name == "checkpoint-auditor"
    ]
    assert len(itself) == 1
    assert {"remote", "dask"} <= itself[0].extras
