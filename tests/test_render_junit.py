"""The JUnit XML report: a test case per run, failures and errors as the gate sees them."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import auditor
from auditor.config import Config
from auditor.gate import gate_exit_code
from auditor.render import junit
from conftest import EXAMPLES, FIXTURES

GOLDEN = FIXTURES.parent / "tests" / "golden"


def parse(result: auditor.AuditResult) -> ET.Element:
    return ET.fromstring(junit.render(result, "runs").encode("utf-8"))


def outcome(case: ET.Element) -> str:
    for kind in ("failure", "error", "skipped"):
        if case.find(kind) is not None:
            return kind
    return "pass"


def break_run(run) -> None:
    for state in [run / "trainer_state.json", *run.glob("checkpoint-*/trainer_state.json")]:
        state.write_text("{not json")


def test_sweep_report_matches_the_reviewed_golden_file():
    here = os.getcwd()
    os.chdir(FIXTURES.parent)
    try:
        text = junit.render(auditor.audit("fixtures/sweep", "fixtures/evidence"), "runs")
    finally:
        os.chdir(here)
    assert text == (GOLDEN / "sweep.junit.xml").read_text()


def test_one_case_per_run_and_a_failure_for_the_flagged_one():
    root = parse(auditor.audit(FIXTURES / "sweep", FIXTURES / "real_overfit_flagged"))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == 7
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "1", "0")
    failed = [c for c in cases if outcome(c) == "failure"]
    assert [c.get("name", "").rsplit("/", 1)[-1] for c in failed] == ["real_overfit_flagged"]
    failure = failed[0].find("failure")
    assert failure is not None and failure.get("type") == "overfit"
    assert failure.get("message", "").startswith(
        "overfit: compare checkpoint-30 with checkpoint-90 "
    )
    assert "checkpoint-90: eval_loss 2.7207" in (failure.text or "")
    assert "outcome: flagged" in (failure.text or "")


def test_a_trainers_best_that_is_an_overfit_pick_fails_its_case():
    root = parse(auditor.audit(EXAMPLES / "cls_accuracy"))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == "trainer_best"
    assert "the Trainer's best, checkpoint-125 (chosen on eval_accuracy)" in failure.get(
        "message", ""
    )


def test_failures_follow_fail_on_like_the_gate():
    config = Config(fail_on=("overfit", "differs"))
    result = auditor.audit(EXAMPLES, FIXTURES / "sweep", config=config)
    root = parse(result)
    # the four runs whose picks differ, and cls_accuracy, whose Trainer's best is flagged
    assert root.get("failures") == "5"
    assert gate_exit_code(result)[0] == 1


def test_an_unreadable_run_is_an_error_or_skipped_when_allowed(copy_run):
    broken = copy_run("sweep/run-0001")
    good = copy_run("sweep/run-0002")
    break_run(broken)
    root = parse(auditor.audit(broken, good))
    assert (root.get("errors"), root.get("failures"), root.get("skipped")) == ("1", "0", "0")
    error = next(c for c in root.iter("testcase") if outcome(c) == "error").find("error")
    assert error is not None and "trainer_state.json" in error.get("message", "")
    allowed = parse(auditor.audit(broken, good, config=Config(allow_unreadable=True)))
    assert (allowed.get("errors"), allowed.get("skipped")) == ("0", "1")


def test_the_config_is_recorded_as_properties():
    root = parse(auditor.audit(FIXTURES / "sweep", config=Config(min_gap_delta=0.2)))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["config.min_gap_delta"] == "0.2"
    assert props["config.weights.gap"] == "0.3"
    assert props["config.fail_on"] == "overfit,no_candidates"
    assert props["sweep_best"].endswith("run-0001/checkpoint-1000")


def test_names_xml_cannot_hold_are_dropped_and_the_rest_escaped(copy_run, tmp_path):
    name = os.fsdecode(b'run-\x01<&"quote\xff')
    copy_run("real_overfit_flagged", dest=name)
    result = auditor.audit(tmp_path)
    text = junit.render(result, "runs")
    root = ET.fromstring(text.encode("utf-8"))
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.get("name", "").endswith('run-<&"quote')
    assert outcome(case) == "failure"


def test_clean_keeps_what_xml_allows():
    assert junit.clean("a\tb\nc\rd\x00\x1f\ufffe\ud800é😀") == "a\tb\nc\rdé😀"


def test_the_deploy_judgement_is_its_own_case():
    from auditor.gate import run_deploy_gate

    deploy = str(FIXTURES / "sweep" / "run-0000" / "checkpoint-700")
    result = run_deploy_gate((), deploy, Config(), lambda p: auditor.audit(*p))
    root = parse(result)
    cases = root.findall("testsuite/testcase")
    assert len(cases) == 2
    deploy_case = cases[-1]
    assert deploy_case.get("name", "").startswith("deploy ")
    assert outcome(deploy_case) == "failure"
    # The run itself is judged through the checkpoint shipped, not twice.
    assert outcome(cases[0]) == "pass"


def test_the_smoothed_pick_is_listed_with_the_other_picks():
    paths = (
        EXAMPLES / "lm_overfit_full",
        EXAMPLES / "cls_accuracy",
        FIXTURES / "sweep" / "run-0001",
    )
    cases = parse(auditor.audit(*paths)).findall("testsuite/testcase")
    texts = [case.find("system-out").text for case in cases]
    assert texts[0].startswith(
        "agree: eval-only pick checkpoint-60 (eval 2.917, overfit 0.29), scorer pick "
        "checkpoint-60 (eval 2.917, overfit 0.29), smoothed pick checkpoint-60 (eval 2.917, "
        "overfit 0.29)"
    )
    failure = cases[1].find("failure")  # the Trainer's best is an overfit pick
    assert failure is not None and "smoothed pick checkpoint-75: eval_loss 0.6972" in failure.text
    assert "smoothed" not in texts[2]  # 10 evaluations: none


def test_the_failed_cases_are_the_runs_the_gate_fails_on():
    # One rule decides both: the exit code's reason and the report a CI system shows.
    for config in (Config(), Config(fail_on=("overfit", "no_candidates", "differs"))):
        result = auditor.audit(FIXTURES, config=config)
        code, reason = gate_exit_code(result)
        cases = parse(result).findall("testsuite/testcase")
        failed = [case.get("name") for case in cases if outcome(case) == "failure"]
        assert code == 1 and failed
        assert reason.startswith(f"FAIL: {len(failed)} run(s) with findings")
        named = failed if len(failed) <= 5 else failed[:5]
        assert all(str(name).split(" (training")[0] in reason for name in named)
