"""The CI gate's decision: which exit code a checked result earns, and the --deploy judgement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from . import exit_codes, storage
from .config import Config
from .discover import LAST_CHECKPOINT, STATE_FILE, checkpoint_step
from .errors import StateFileError, UsageError
from .picks import judge_deploy
from .results import AuditResult, RunResult


def run_deploy_gate(
    paths: tuple[str, ...],
    deploy: str,
    config: Config,
    audit: Callable[[tuple[str, ...]], AuditResult],
) -> AuditResult:
    """Return the audit of `paths` and of the deploy checkpoint's run, with its judgement."""
    name = storage.basename(deploy)
    if not _exists(deploy, folder=True):
        raise UsageError(f"--deploy {deploy}: no such checkpoint folder")
    if checkpoint_step(name) is None and name != LAST_CHECKPOINT:
        raise UsageError(
            f"--deploy {deploy}: not a checkpoint folder (expected .../checkpoint-<step>)"
        )
    if not _exists(storage.join(deploy, STATE_FILE)):
        raise UsageError(f"--deploy {deploy}: has no {STATE_FILE}; is the save complete?")
    run_dir = storage.parent(deploy) or "."
    result = audit((*paths, run_dir))
    target = storage.canonical(run_dir)
    # A folder holding several trainings gives several runs: the one holding the folder.
    runs = [r for r in result.runs if storage.canonical(r.run_dir) == target]
    run = next(
        (r for r in runs if any(c.checkpoint == name and c.on_disk for c in r.checkpoints)),
        runs[0] if runs else None,
    )
    if run is None or run.error is not None:
        reason = run.error if run is not None else "no run found there"
        raise UsageError(f"--deploy {deploy}: its run cannot be audited ({reason})")
    try:
        judgement = judge_deploy(run, name, config)
    except ValueError as exc:
        raise UsageError(f"--deploy {deploy}: {exc}") from exc
    return replace(result, deploy=judgement)


#: Why a run fails the gate besides its verdict (see `failure`).
UNREADABLE = "unreadable"
TRAINER_BEST = "trainer_best"


def failure(run: RunResult, result: AuditResult) -> str | None:
    """Return why `run` fails the gate of `result`, or None when it passes.

    "unreadable": it could not be read and unreadable runs are not allowed (the gate fails
    closed); its verdict, when that is in `fail_on`; "trainer_best": the checkpoint the Trainer
    recorded as best is an overfit pick and `overfit` is in `fail_on`. The run of the checkpoint
    judged with --deploy never fails here: that judgement (`result.deploy`) decides for it.
    """
    config = result.config
    if run.error is not None:
        return None if config.allow_unreadable else UNREADABLE
    if result.deploy is not None and _same_dir(run.run_dir, result.deploy.run_dir):
        return None
    if run.verdict in config.fail_on:
        return run.verdict
    if "overfit" in config.fail_on and run.trainer_best_flagged:
        return TRAINER_BEST
    return None


def _exists(path: str, folder: bool = False) -> bool:
    try:
        return storage.for_path(path).stat(path).is_dir or not folder
    except StateFileError:
        return False


def _same_dir(a: str, b: str) -> bool:
    return storage.canonical(a) == storage.canonical(b)


def _finding(run: RunResult, why: str) -> str:
    if why != TRAINER_BEST:
        return why
    best = run.trainer_best.label if run.trainer_best else "-"
    return f"the Trainer's best, {best}, is an overfit pick"


def gate_exit_code(result: AuditResult) -> tuple[int, str]:
    """Return (exit code, reason): 0 pass, 1 a finding fails the gate, 2 a run is unreadable."""
    config = result.config
    judged = [(run, failure(run, result)) for run in result.runs]
    unreadable = sum(1 for _, why in judged if why == UNREADABLE)
    if unreadable:
        return exit_codes.ERROR, (
            f"{unreadable} run(s) could not be read; the gate fails closed "
            "(--allow-unreadable to accept that)"
        )
    failing = [(run, why) for run, why in judged if why is not None]
    if result.deploy is not None and result.deploy.flagged:
        deploy = result.deploy
        return exit_codes.GATE_FAILED, f"FAIL: deploying {deploy.checkpoint}: {deploy.reason}"
    if failing:
        names = ", ".join(f"{run.run_dir} ({_finding(run, why)})" for run, why in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        return exit_codes.GATE_FAILED, (
            f"FAIL: {len(failing)} run(s) with findings in {list(config.fail_on)}: {names}{more}"
        )
    return exit_codes.OK, "pass"
