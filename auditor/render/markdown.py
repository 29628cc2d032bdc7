"""The GitHub-flavoured Markdown summary, for a pull-request comment or $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import re

from ..config import to_yaml
from ..evidence import decision
from ..results import AuditResult, CheckpointResult, RunResult, verdict_rank
from ..sweep import SweepBest
from .text import (
    decisions,
    evidence_lines,
    number,
    pick_label,
    pick_with_numbers,
    safe,
    score_cells,
)

_BACKTICKS = re.compile(r"`+")


def render(result: AuditResult, view: str = "runs") -> str:
    """Return a Markdown summary: flagged runs first, each pick with its gap, the sweep's best
    checkpoint, and the config the audit used. With view="checkpoints", one table per run."""
    lines = [f"### {_headline(result)}", ""]
    if view == "checkpoints":
        for run in result.runs:
            lines += _checkpoint_section(run, result)
    else:
        lines += _run_table(result)
    if result.deploy is not None:
        status = "FAIL" if result.deploy.flagged else "pass"
        target = code(result.deploy.checkpoint, cell=False)
        lines += [f"**Deploy {target}: {status}**: {text(result.deploy.reason)}", ""]
    errors = [run for run in result.runs if run.error is not None]
    if errors:
        lines += ["**Unreadable runs**", ""]
        lines += [
            f"- {code(run.run_dir, cell=False)}: {code(run.error or '', cell=False)}"
            for run in errors
        ]
        lines.append("")
    for group in result.sweep_best or ():
        lines += [_sweep_line(group), ""]
    lines += _config_block(result)
    return "\n".join(lines) + "\n"


def _headline(result: AuditResult) -> str:
    total = len(result.runs)
    noun = "run" if total == 1 else "runs"
    parts = [f"{len(result.flagged)} of {total} {noun} flagged"]
    if result.errors:
        parts.append(f"{len(result.errors)} unreadable")
    return "Checkpoint audit: " + ", ".join(parts)


def _run_table(result: AuditResult) -> list[str]:
    lines = [
        "| run | verdict | eval-only pick | scorer pick | smoothed pick | trainer best |",
        "|---|---|---|---|---|---|",
    ]
    for run in sorted(result.runs, key=lambda run: verdict_rank(run.verdict)):
        verdict = f"**{run.verdict.upper()}**" if run.flagged else run.verdict
        if run.error is not None:
            lines.append(f"| {code(run.run_dir)} | **error** | - | - | - | - |")
            continue
        cells = [
            code(run.label),
            verdict,
            text(pick_with_numbers(run, run.eval_only_pick)),
            text(pick_with_numbers(run, run.scorer_pick)),
            text(pick_label(run.smoothed_pick)),
            text(pick_label(run.trainer_best)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    found = sorted(decisions(result), key=lambda item: verdict_rank(item[0].verdict))
    if found:
        lines += [f"- {code(run.label, cell=False)}: {text(line)}" for run, line in found]
        lines.append("")
    return lines


def _checkpoint_section(run: RunResult, result: AuditResult) -> list[str]:
    verdict = run.verdict.upper() if run.flagged else run.verdict
    lines = [f"#### {code(run.label, cell=False)}: {verdict}", ""]
    if run.error is not None:
        return [*lines, f"error: {code(run.error, cell=False)}", ""]
    lines += [
        f"eval key: {code(run.eval_key or '-', cell=False)}",
        "",
        "| step | checkpoint | eval_loss | train_loss | gap | overfit | c.eval | c.gap | c.ppl "
        "| c.improv | score | pick |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    lines += [_checkpoint_row(run, row) for row in run.checkpoints]
    lines.append("")
    for evidence in evidence_lines(run):
        lines += [text(evidence), ""]
    said = decision(run, result.config)
    if said:
        lines += [f"**Decision**: {text(said)}", ""]
    return lines


def _checkpoint_row(run: RunResult, row: CheckpointResult) -> str:
    cells = [
        str(row.step),
        code(row.checkpoint) if row.checkpoint else "-",
        number(row.eval_loss),
        number(row.train_loss),
        number(row.gap),
        number(row.overfit),
        *score_cells(run, row),
    ]
    return "| " + " | ".join(cells) + " |"


def _sweep_line(group: SweepBest) -> str:
    by_score, by_eval_loss = group.by_score, group.by_eval_loss
    line = (
        f"**Best of {code(group.parent, cell=False)}** ({group.runs} runs on "
        f"{code(group.eval_key, cell=False)}) by score: "
        f"{code(by_score.label_below(group.parent), cell=False)} "
        f"(score {number(by_score.score)}, eval loss {number(by_score.eval_loss)})"
    )
    if by_eval_loss == by_score:
        return line + "; lowest eval loss: the same checkpoint."
    return (
        line + f"; lowest eval loss: {code(by_eval_loss.label_below(group.parent), cell=False)} "
        f"(score {number(by_eval_loss.score)}, eval loss {number(by_eval_loss.eval_loss)})."
    )


def _config_block(result: AuditResult) -> list[str]:
    body = to_yaml(result.config, comments=False).rstrip("\n")
    fence = "`" * max(3, _longest_backticks(body) + 1)
    return [
        "<details><summary>Config</summary>",
        "",
        f"{fence}yaml",
        body,
        fence,
        "",
        "</details>",
    ]


def _longest_backticks(value: str) -> int:
    return max((len(m.group(0)) for m in _BACKTICKS.finditer(value)), default=0)


def code(value: str, cell: bool = True) -> str:
    """Return `value` as an inline code span (for a table cell unless cell=False).

    A code span keeps names literal (no emphasis, links, @mentions or #references); a pipe
    still ends a table cell inside one, so there it is escaped.
    """
    value = safe(value)
    if cell:
        value = value.replace("|", "\\|")
    fence = "`" * (_longest_backticks(value) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


# The characters that change how GitHub renders inline text (emphasis, links, HTML, math,
# tables, strike-through); each is shown literally when escaped with a backslash.
_ACTIVE = re.compile(r"([\\`*_\[\]<>|~&$!#])")


def text(value: str) -> str:
    """Return plain text with every Markdown-active character escaped."""
    return _ACTIVE.sub(r"\\\1", safe(value))
