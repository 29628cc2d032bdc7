"""The JUnit XML report: one test case per run, so CI systems show the gate's result natively."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any

from ..config import Config
from ..evidence import decision
from ..gate import failure
from ..results import AuditResult, RunResult
from .text import evidence_lines, number, pick_with_numbers

# XML 1.0 cannot hold most control characters or lone surrogates (a folder name that is not
# UTF-8 reaches Python as surrogates); they are dropped rather than break the whole report.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
SUITE = "ckpt-audit"


def clean(text: str) -> str:
    """Return `text` without the characters XML 1.0 cannot hold."""
    return _NOT_XML.sub("", text)


def render(result: AuditResult, view: str = "runs") -> str:
    """Return a JUnit XML document: a test case per run, a failure for each run whose verdict
    fails the gate (config fail_on; the checkpoint judged with --deploy), an error for each
    unreadable run (skipped instead when unreadable runs are allowed)."""
    cases = [_case(run, result) for run in result.runs]
    if result.deploy is not None:
        cases.append(_deploy_case(result))
    counts = {
        kind: sum(1 for case in cases if case.find(kind) is not None)
        for kind in ("failure", "error", "skipped")
    }
    totals = {
        "tests": str(len(cases)),
        "failures": str(counts["failure"]),
        "errors": str(counts["error"]),
        "skipped": str(counts["skipped"]),
    }
    suites = ET.Element("testsuites", {"name": SUITE, **totals})
    suite = ET.SubElement(suites, "testsuite", {"name": SUITE, **totals})
    properties = ET.SubElement(suite, "properties")
    for name, value in _flatten("config", result.config.to_dict()):
        ET.SubElement(properties, "property", {"name": name, "value": clean(value)})
    for group in result.sweep_best or ():
        best = group.by_score
        ET.SubElement(properties, "property", {"name": "sweep_best", "value": clean(best.label)})
    suite.extend(cases)
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _case(run: RunResult, result: AuditResult) -> ET.Element:
    case = ET.Element("testcase", {"classname": SUITE, "name": clean(run.label)})
    summary = _summary(run, result.config)
    why = failure(run, result)
    if run.error is not None:
        if why is None:
            ET.SubElement(case, "skipped", {"message": clean(f"unreadable: {run.error}")})
        else:
            error = ET.SubElement(case, "error", {"message": clean(run.error), "type": "error"})
            error.text = clean(run.error)
    elif why is not None:
        failed = ET.SubElement(case, "failure", {"message": clean(summary), "type": why})
        failed.text = clean(_details(run, result.config))
    out = ET.SubElement(case, "system-out")
    out.text = clean("\n".join([summary, *(f"warning: {w}" for w in run.warnings)]))
    return case


def _deploy_case(result: AuditResult) -> ET.Element:
    deploy = result.deploy
    assert deploy is not None
    name = f"deploy {os.path.join(deploy.run_dir, deploy.checkpoint)}"
    case = ET.Element("testcase", {"classname": SUITE, "name": clean(name)})
    if deploy.flagged:
        failure = ET.SubElement(
            case, "failure", {"message": clean(deploy.reason), "type": "deploy"}
        )
        failure.text = clean(deploy.reason)
    out = ET.SubElement(case, "system-out")
    out.text = clean(deploy.reason)
    return case


def _summary(run: RunResult, config: Config) -> str:
    if run.error is not None:
        return f"error: {run.error}"
    said = decision(run, config)
    if said is not None:
        return f"{run.verdict}: {said}"
    text = (
        f"{run.verdict}: eval-only pick {pick_with_numbers(run, run.eval_only_pick)}, "
        f"scorer pick {pick_with_numbers(run, run.scorer_pick)}"
    )
    if run.smoothed_pick is not None:
        text += f", smoothed pick {pick_with_numbers(run, run.smoothed_pick)}"
    return text


def _details(run: RunResult, config: Config) -> str:
    lines = [_summary(run, config)]
    for name, pick in (
        ("eval-only pick", run.eval_only_pick),
        ("scorer pick", run.scorer_pick),
        ("smoothed pick", run.smoothed_pick),
    ):
        row = run.row(pick)
        if row is None or pick is None:
            continue
        lines.append(
            f"{name} {pick.label}: eval_loss {number(row.eval_loss)}, "
            f"train_loss {number(row.train_loss)}, overfit {number(row.overfit)}, "
            f"score {number(row.score.total if row.score else None)}"
        )
    lines += evidence_lines(run)
    return "\n".join(lines)


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _flatten(f"{prefix}.{key}", item)]
    if isinstance(value, list):
        return [(prefix, ",".join(str(v) for v in value))]
    if value is None:
        return [(prefix, "")]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]
