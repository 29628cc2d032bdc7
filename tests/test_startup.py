"""Start-up: --help and a scan of one run import only what they use (pandas costs a second)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import FIXTURES

# Run the CLI as `python -m auditor ARGS` does, then list the modules it imported on stderr.
PROBE = """
import json, runpy, sys
sys.argv = ["ckpt-audit", *json.loads(sys.argv[1])]
try:
    runpy.run_module("auditor", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""
NEVER_AT_START = ("pandas", "numpy", "matplotlib", "yaml", "xml.etree", "csv")


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    marker = done.stderr.rindex("MODULES ")
    return done, set(json.loads(done.stderr[marker + len("MODULES ") :]))


def test_help_imports_neither_the_audit_nor_any_report_format():
    done, modules = imported("--help")
    assert done.returncode == 0
    assert "Usage:" in done.stdout and "scan" in done.stdout
    assert done.stderr.startswith("\nMODULES ")
    heavy = {m for m in modules if m.split(".")[0] in NEVER_AT_START or m in NEVER_AT_START}
    assert heavy == set()
    assert {"auditor.api", "auditor.sources", "auditor.pair", "orjson"}.isdisjoint(modules)
    assert {m for m in modules if m.startswith("auditor.render.")} == set()


def test_a_json_scan_of_one_run_imports_no_table_or_dataframe_library():
    done, modules = imported("scan", str(FIXTURES / "real_overfit_flagged"), "--format", "json")
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert [run["verdict"] for run in report["runs"]] == ["overfit"]
    assert "audited 1 run: 1 overfit" in done.stderr
    heavy = {m for m in modules if m.split(".")[0] in NEVER_AT_START or m in NEVER_AT_START}
    assert heavy == set()
    assert "pickle" not in modules  # one run: no worker process to send results back
