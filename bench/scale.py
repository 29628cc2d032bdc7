"""Benchmark the two ends of scale: thousands of tiny runs, and one run with a huge history.

    python3 bench/run.py --scale              # both shapes, generated into /tmp once
    python3 bench/run.py --scale --huge-mb 50 # a smaller huge file where /tmp is short of room
    python3 bench/run.py --scale --tiny-only  # only the time of the tiny runs

Tiny runs: 20,000 runs x 3 checkpoints (19 log entries in each run's newest file), timed warm
and with a cold page cache (dropped before every command where this user may write
/proc/sys/vm/drop_caches; said when refused), against the naive script and the near-limit
reference in the same alternating rounds; peak memory of every output format at 2,000 and
20,000 runs. Huge history: one run of two checkpoints whose newest trainer_state.json is about
--huge-mb MB, timed against both scripts, and our peak memory against the file's size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from run import Sample, alternate, compare, measure, median, ours, peak_memory

TINY = (20_000, 3)
TINY_SMALL = (2_000, 3)
# 50 steps between saves and a log every 10: 15 training logs and 3 evaluations, plus the
# closing entry in the root file: 19 entries.
TINY_SHAPE = ["--ckpts", "3", "--eval-every", "50", "--logging-steps", "10"]
TARGET_TINY_VS_NAIVE = 2.0
TARGET_FORMAT_VS_JSON = 1.5
TARGET_HUGE_MEMORY_VS_FILE = 3.0
FORMATS = ("json", "table", "csv")
# One training log entry as the Trainer indents it is about 150 bytes.
_ENTRY_BYTES = 150
_DROP_CACHES = "/proc/sys/vm/drop_caches"


def ensure_tiny(scripts: Path, workdir: Path, runs: int) -> Path:
    """Return the tiny-runs sweep of `runs` runs under `workdir`, generating it once."""
    sweep = workdir / f"tiny-{runs}x3"
    if not sweep.is_dir():
        _generate(scripts, sweep, ["--runs", str(runs), *TINY_SHAPE])
    return sweep


def ensure_huge(scripts: Path, workdir: Path, megabytes: int) -> Path:
    """Return a one-run sweep whose newest trainer_state.json is about `megabytes` MB."""
    sweep = workdir / f"huge-{megabytes}"
    if not sweep.is_dir():
        # Two checkpoints: the history is logged every step, evaluated at each save.
        every = max(10, megabytes * 1_000_000 // (2 * _ENTRY_BYTES))
        _generate(
            scripts,
            sweep,
            ["--runs", "1", "--ckpts", "2", "--eval-every", str(every), "--logging-steps", "1"],
        )
    return sweep


def _generate(scripts: Path, sweep: Path, options: list[str]) -> None:
    partial = sweep.with_name(sweep.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"generating {sweep} ({' '.join(options)}) ...", flush=True)
    subprocess.run(
        [sys.executable, str(scripts / "gen_sweep.py"), str(partial), *options], check=True
    )
    partial.rename(sweep)


def can_drop_caches() -> bool:
    """Return True when this user may drop the page cache (root on Linux)."""
    try:
        with open(_DROP_CACHES, "w") as handle:
            handle.write("3\n")
    except OSError:
        return False
    return True


def cold(commands: dict[str, list[str]], repeat: int, outdir: Path) -> dict[str, Sample]:
    """Like run.alternate, with the page cache dropped (after a sync) before every command."""
    samples: dict[str, list[Sample]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            os.sync()
            with open(_DROP_CACHES, "w") as handle:
                handle.write("3\n")
            samples[name].append(measure(command, str(outdir / f"{name}.out")))
    return {name: median(found) for name, found in samples.items()}


def scan(sweep: Path, fmt: str) -> list[str]:
    """Return `ckpt-audit scan` of `sweep` in format `fmt`, written to stdout (a pipe)."""
    return [sys.executable, "-m", "auditor", "scan", str(sweep), "--format", fmt, "-q"]


def _table(title: str, rows: dict[str, Sample]) -> None:
    print(f"\n{title}")
    print("| command | wall s | CPU s |")
    print("|---|---|---|")
    for name, sample in rows.items():
        print(f"| {name} | {sample.wall:.2f} | {sample.cpu:.2f} |")


def run_scale(
    scripts: Path, workdir: Path, repeat: int, huge_mb: int, tiny_only: bool = False
) -> list[tuple[str, bool]]:
    """Measure both shapes (with `tiny_only`, only the time of the tiny runs), print the
    figures, and return the targets as (name, met)."""
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    tiny = ensure_tiny(scripts, workdir, TINY[0])
    targets: list[tuple[str, bool]] = []

    def trio(sweep: Path) -> dict[str, list[str]]:
        return {
            "ours": ours(sweep),
            "naive": [sys.executable, str(scripts / "baseline_naive.py"), str(sweep)],
            "reference": [sys.executable, str(scripts / "limit_newest.py"), str(sweep)],
        }

    # Ours in one process too: how much the workers save depends on the CPUs left free by
    # whatever else the machine runs, the work per run does not.
    warm = alternate(
        {**trio(tiny), "ours, 1 process": ["env", "CKPT_AUDIT_JOBS=1", *ours(tiny)]}, repeat, out
    )
    mismatches = compare(tiny, str(out / "ours.out"), str(out / "reference.out"))
    _table(f"{TINY[0]} tiny runs x {TINY[1]} checkpoints, warm, medians of {repeat} rounds", warm)
    ratio = warm["naive"].wall / warm["ours"].wall
    print(
        f"naive / ours: {ratio:.2f}x wall, {warm['naive'].cpu / warm['ours'].cpu:.2f}x CPU "
        f"(target >= {TARGET_TINY_VS_NAIVE:g}x); ours / reference: "
        f"{warm['ours'].wall / warm['reference'].wall:.2f}x wall; naive / ours in 1 process: "
        f"{warm['naive'].wall / warm['ours, 1 process'].wall:.2f}x wall, "
        f"{warm['naive'].cpu / warm['ours, 1 process'].cpu:.2f}x CPU"
    )
    targets.append(("tiny runs warm vs naive", ratio >= TARGET_TINY_VS_NAIVE))
    if can_drop_caches():
        commands = trio(tiny)
        del commands["reference"]
        chilled = cold(commands, repeat, out)
        _table(f"the same, page cache dropped before each command, medians of {repeat}", chilled)
        ratio = chilled["naive"].wall / chilled["ours"].wall
        print(f"naive / ours cold: {ratio:.2f}x wall (target >= {TARGET_TINY_VS_NAIVE:g}x)")
        targets.append(("tiny runs cold vs naive", ratio >= TARGET_TINY_VS_NAIVE))
    else:
        print(f"\ncold page cache: not measured ({_DROP_CACHES} cannot be written by this user)")
    if tiny_only:
        targets.append(("picks and flags as the reference", mismatches == 0))
        return targets
    tiny_small = ensure_tiny(scripts, workdir, TINY_SMALL[0])
    huge = ensure_huge(scripts, workdir, huge_mb)

    print("\npeak memory (MiB) by format, stdout a pipe, medians of 3")
    print(f"| format | {TINY_SMALL[0]} runs | {TINY[0]} runs | growth per run |")
    print("|---|---|---|---|")
    peaks: dict[str, float] = {}
    for fmt in FORMATS:
        small = peak_memory(scan(tiny_small, fmt), out)
        large = peak_memory(scan(tiny, fmt), out)
        peaks[fmt] = large
        per_run = (large - small) * 1024 * 1024 / (TINY[0] - TINY_SMALL[0])
        print(f"| {fmt} | {small:.1f} | {large:.1f} | {per_run:.0f} bytes |")
    worst = max(peaks[f] / peaks["json"] for f in FORMATS)
    print(f"largest / json at {TINY[0]} runs: {worst:.2f}x (target <= {TARGET_FORMAT_VS_JSON:g}x)")
    targets.append(("memory of every format", worst <= TARGET_FORMAT_VS_JSON))

    newest = max(huge.glob("*/checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_size)
    size_mib = newest.stat().st_size / 2**20
    timed = alternate(trio(huge), max(3, repeat // 2 + 1), out)
    mismatches += compare(huge, str(out / "ours.out"), str(out / "reference.out"))
    _table(f"one run, newest trainer_state.json {size_mib:.0f} MiB, warm", timed)
    print(
        f"ours / reference: {timed['ours'].wall / timed['reference'].wall:.2f}x wall; "
        f"naive / ours: {timed['naive'].wall / timed['ours'].wall:.2f}x wall"
    )
    mine = peak_memory(ours(huge), out)
    naive = peak_memory(trio(huge)["naive"], out, rounds=1)
    print(
        f"peak memory: ours {mine:.0f} MiB ({mine / size_mib:.2f}x the file; target <= "
        f"{TARGET_HUGE_MEMORY_VS_FILE:g}x), naive {naive:.0f} MiB ({naive / size_mib:.2f}x)"
    )
    targets.append(("huge history memory", mine / size_mib <= TARGET_HUGE_MEMORY_VS_FILE))
    targets.append(("picks and flags as the reference", mismatches == 0))
    return targets
