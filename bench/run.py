"""Benchmark `ckpt-audit scan --format json` on generated sweeps against a hand-written script
and a near-limit reference; check that every run's picks and flag agree with the reference.
Then the HTML report of a 500-run sweep against `scan --format json` on it, its size, and its
first chart in headless Chromium.

    python3 bench/run.py                # a few minutes; sweeps are generated into /tmp once
    python3 bench/run.py --repeat 3     # fewer alternating rounds
    python3 bench/run.py --report-only  # only the HTML report's targets
    python3 bench/run.py --scale        # only thousands of tiny runs and one huge history
                                        # (bench/scale.py; --huge-mb N for a smaller file,
                                        # --tiny-only for the tiny runs' time alone)

Needs the shared benchmark scripts (../shared/bench beside the repo, or --scripts DIR):
gen_sweep.py, baseline_naive.py and limit_newest.py. Exits 1 when a pick or a flag differs
from the reference, and (with --strict) when a speed or memory target is missed.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAIN = (200, 20)
# A second and third size: half the runs, and half the checkpoints per run.
SCALING = [(100, 20), (200, 10)]
# And thousands of runs: the main sweep this many times over.
MANY_COPIES = 10
TARGET_VS_NAIVE = 10.0
TARGET_VS_REFERENCE = 2.0
TARGET_HELP_VS_CLICK = 1.5
# Twice the work may take at most twice the time, give or take this machine's noise.
LINEAR_WITH_NOISE = 2.2
# Peak memory may not grow with the number of runs (beyond noise, in MiB).
MEMORY_NOISE_MIB = 4.0
# The HTML report of a large sweep: its time against `scan --format json` on the same sweep,
# its size, and how soon headless Chromium draws its first chart.
REPORT_SWEEP = (500, 20)
TARGET_REPORT_VS_SCAN = 3.0
TARGET_PAGE_MB = 10.0
TARGET_FIRST_CHART_S = 2.0


@dataclass(frozen=True)
class Sample:
    """One timed subprocess: wall seconds and CPU seconds (user + system)."""

    wall: float
    cpu: float


def measure(command: list[str], stdout_path: str | None = None) -> Sample:
    """Return the Sample of running `command` once (its stdout to `stdout_path` or nowhere)."""
    sink = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    finally:
        if stdout_path:
            sink.close()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} exited with {process.returncode}")
    return Sample(wall, usage.ru_utime + usage.ru_stime)


def median(samples: list[Sample]) -> Sample:
    """Return the per-field medians of `samples`."""
    return Sample(
        statistics.median(s.wall for s in samples),
        statistics.median(s.cpu for s in samples),
    )


def ensure_sweep(scripts: Path, workdir: Path, runs: int, ckpts: int) -> Path:
    """Return the sweep folder for runs x ckpts under `workdir`, generating it once."""
    sweep = workdir / f"sweep-{runs}x{ckpts}"
    if sweep.is_dir():
        return sweep
    partial = workdir / f"sweep-{runs}x{ckpts}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    print(f"generating {sweep} ({runs} runs x {ckpts} checkpoints) ...", flush=True)
    subprocess.run(
        [
            sys.executable,
            str(scripts / "gen_sweep.py"),
            str(partial),
            "--runs",
            str(runs),
            "--ckpts",
            str(ckpts),
        ],
        check=True,
    )
    partial.rename(sweep)
    return sweep


def compile_bytecode() -> str:
    """Compile the package's bytecode as pip does at install, and return where it is.

    Run from a checkout, Python compiles the modules on every start when it may not write
    __pycache__ (PYTHONDONTWRITEBYTECODE=1): tens of milliseconds no installed copy pays.
    """
    found = subprocess.run(
        [sys.executable, "-c", "import auditor, os; print(os.path.dirname(auditor.__file__))"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    package = found.stdout.strip()
    compileall.compile_dir(package, quiet=1)
    return package


def ensure_many(sweep: Path, copies: int) -> Path | None:
    """Return a sweep of `copies` times the runs of `sweep`, made of hard links (no extra disk),
    or None where the file system cannot link."""
    many = sweep.with_name(f"{sweep.name}-x{copies}")
    if many.is_dir():
        return many
    partial = many.with_name(many.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for copy in range(copies):
            for run in sorted(sweep.iterdir()):
                shutil.copytree(run, partial / f"{run.name}-{copy}", copy_function=os.link)
    except OSError as exc:
        print(f"no {copies}x sweep ({exc}): the thousands-of-runs point is left out")
        shutil.rmtree(partial, ignore_errors=True)
        return None
    partial.rename(many)
    return many


# Started by a small launcher, a command's peak memory is its own: a process started straight
# from this one would count this one's memory (grown by parsing reports) as its peak.
_PEAK_LAUNCHER = """
import os, sys
child = os.fork()
if child == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(child, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_memory(command: list[str], outdir: Path, rounds: int = 3) -> float:
    """Return the median peak memory (MiB) of `rounds` runs of `command` back to back."""
    peaks = []
    for _ in range(rounds):
        with open(outdir / "memory.out", "wb") as sink:
            subprocess.run(
                [sys.executable, "-S", "-c", _PEAK_LAUNCHER, str(outdir / "peak"), *command],
                stdout=sink,
                stderr=subprocess.DEVNULL,
                cwd=REPO,
                check=True,
            )
        # ru_maxrss is in KiB on Linux.
        peaks.append(int((outdir / "peak").read_text()) / 1024)
    return statistics.median(peaks)


def ours(sweep: Path) -> list[str]:
    """Return the command that audits `sweep` as a user would."""
    return [sys.executable, "-m", "auditor", "scan", str(sweep), "--format", "json", "-q"]


def picks_from_report(path: str) -> dict[str, tuple[int | None, int | None, bool]]:
    """Return {run name: (eval-only step, scorer step, flagged)} of our JSON report."""
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    found = {}
    for run in report["runs"]:
        eval_only, scorer = run["eval_only_pick"], run["scorer_pick"]
        found[os.path.basename(run["run_dir"])] = (
            eval_only["step"] if eval_only else None,
            scorer["step"] if scorer else None,
            run["flagged"],
        )
    return found


def picks_from_lines(path: str) -> dict[str, tuple[int | None, int | None, bool]]:
    """Return the same mapping from a reference script's one-JSON-line-per-run output."""
    found = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            run = json.loads(line)
            found[os.path.basename(run["run_dir"])] = (
                run["eval_only_pick"],
                run["scorer_pick"],
                run["flagged"],
            )
    return found


def compare(sweep: Path, ours_out: str, reference_out: str) -> int:
    """Print every run whose picks or flag differ from the reference; return how many."""
    mine, theirs = picks_from_report(ours_out), picks_from_lines(reference_out)
    differ = sorted(r for r in theirs.keys() | mine.keys() if mine.get(r) != theirs.get(r))
    for run in differ:
        print(f"MISMATCH {sweep.name}/{run}: ours {mine.get(run)}, reference {theirs.get(run)}")
    return len(differ)


def alternate(commands: dict[str, list[str]], repeat: int, outdir: Path) -> dict[str, Sample]:
    """Run each command `repeat` times, interleaved, and return each one's median Sample."""
    samples: dict[str, list[Sample]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            samples[name].append(measure(command, str(outdir / f"{name}.out")))
    return {name: median(found) for name, found in samples.items()}


def first_chart_seconds(page: Path) -> float | None:
    """Return the seconds from navigation to the first chart drawn, in headless Chromium, or
    None without Chromium. Uses the test suite's DevTools driver (pytest installed)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import tempfile

        from test_browser import FIRST_CHART_MS, Browser  # type: ignore[import-not-found]

        executable = shutil.which("chromium") or shutil.which("chromium-browser")
        if executable is None:
            return None
        with tempfile.TemporaryDirectory() as profile:
            browser = Browser(executable, Path(profile))
            try:
                browser.open(page.as_uri())
                found = browser.evaluate(FIRST_CHART_MS)
                if browser.errors():
                    sys.exit(f"bench: console errors in {page}: {browser.errors()}")
            finally:
                browser.close()
        return None if found is None else found / 1000
    finally:
        sys.path.remove(str(REPO / "tests"))


def report_targets(sweep: Path, repeat: int, out: Path) -> list[tuple[str, bool]]:
    """Time `report` against `scan --format json` on `sweep`, print the figures, and return
    the report's targets as (name, met)."""
    page = out / "report.html"
    report = [sys.executable, "-m", "auditor", "report", str(sweep), "-q", "-o", str(page)]
    timed = alternate({"scan": ours(sweep), "report": report}, repeat, out)
    ratio = timed["report"].wall / timed["scan"].wall
    megabytes = page.stat().st_size / 1e6
    first = first_chart_seconds(page)
    print()
    print(f"HTML report of {sweep.name}, medians of {repeat} rounds")
    print(
        f"report / scan --format json: {ratio:.2f}x ({timed['report'].wall:.2f} s vs "
        f"{timed['scan'].wall:.2f} s; target <= {TARGET_REPORT_VS_SCAN:g}x)"
    )
    print(f"page size:              {megabytes:.1f} MB (target < {TARGET_PAGE_MB:g} MB)")
    if first is None:
        print("first chart:            not measured (no Chromium)")
    else:
        print(f"first chart drawn:      {first:.2f} s (target < {TARGET_FIRST_CHART_S:g} s)")
    return [
        ("report vs scan", ratio <= TARGET_REPORT_VS_SCAN),
        ("page size", megabytes < TARGET_PAGE_MB),
        ("first chart", first is not None and first < TARGET_FIRST_CHART_S),
    ]


def machine() -> str:
    """Return the CPU count, CPU model and Python version of this machine."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}"


def main() -> int:
    """Run the benchmark; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scripts", type=Path, default=REPO.parent / "shared" / "bench")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ckpt-audit-bench"))
    parser.add_argument("--repeat", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--report-only", action="store_true", help="measure only the HTML report's targets"
    )
    parser.add_argument(
        "--scale", action="store_true", help="measure only the tiny-runs and huge-history shapes"
    )
    parser.add_argument(
        "--huge-mb", type=int, default=300, help="size of the huge trainer_state.json (MB)"
    )
    parser.add_argument(
        "--tiny-only", action="store_true", help="with --scale: only the time of the tiny runs"
    )
    args = parser.parse_args()
    scripts = args.scripts.resolve()
    for name in ("gen_sweep.py", "baseline_naive.py", "limit_newest.py"):
        if not (scripts / name).is_file():
            sys.exit(f"bench: {scripts / name} not found; pass --scripts DIR")
    if args.workdir.resolve().is_relative_to(REPO):
        sys.exit("bench: --workdir must be outside the repository")
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = args.workdir / "out"
    out.mkdir(exist_ok=True)
    if args.scale:
        from scale import run_scale

        print(f"machine: {machine()}", flush=True)
        print(f"measuring {compile_bytecode()} (bytecode compiled, as pip does at install)")
        missed = [
            name
            for name, ok in run_scale(
                scripts, args.workdir, args.repeat, args.huge_mb, args.tiny_only
            )
            if not ok
        ]
        print(f"targets missed: {', '.join(missed)}" if missed else "targets met")
        return 1 if missed and args.strict else 0
    if args.report_only:
        print(f"machine: {machine()}", flush=True)
        print(f"measuring {compile_bytecode()} (bytecode compiled, as pip does at install)")
        sweep = ensure_sweep(scripts, args.workdir, *REPORT_SWEEP)
        missed = [name for name, ok in report_targets(sweep, args.repeat, out) if not ok]
        print(f"targets missed: {', '.join(missed)}" if missed else "targets met")
        return 1 if missed and args.strict else 0
    sweeps = {
        size: ensure_sweep(scripts, args.workdir, *size) for size in [MAIN, *SCALING, REPORT_SWEEP]
    }
    print(f"machine: {machine()}", flush=True)
    print(f"measuring {compile_bytecode()} (bytecode compiled, as pip does at install)")

    main_sweep = sweeps[MAIN]
    reference = [sys.executable, str(scripts / "limit_newest.py"), str(main_sweep)]
    naive = [sys.executable, str(scripts / "baseline_naive.py"), str(main_sweep)]
    medians = alternate(
        {"ours": ours(main_sweep), "reference": reference, "naive": naive}, args.repeat, out
    )
    mismatches = compare(main_sweep, str(out / "ours.out"), str(out / "reference.out"))

    scaled: dict[tuple[int, int], Sample] = {MAIN: medians["ours"]}
    scaled_reference: dict[tuple[int, int], Sample] = {MAIN: medians["reference"]}
    for size in SCALING:
        sweep = sweeps[size]
        result = alternate(
            {
                "ours": ours(sweep),
                "reference": [sys.executable, str(scripts / "limit_newest.py"), str(sweep)],
            },
            args.repeat,
            out,
        )
        scaled[size], scaled_reference[size] = result["ours"], result["reference"]
        mismatches += compare(sweep, str(out / "ours.out"), str(out / "reference.out"))

    # Thousands of runs: the main sweep ten times over, fewer rounds (each takes seconds).
    many = ensure_many(main_sweep, MANY_COPIES)
    thousands: dict[str, Sample] = {}
    if many is not None:
        thousands = alternate(
            {
                "ours": ours(many),
                "reference": [sys.executable, str(scripts / "limit_newest.py"), str(many)],
            },
            max(3, args.repeat // 2),
            out,
        )
        mismatches += compare(many, str(out / "ours.out"), str(out / "reference.out"))

    startup = alternate(
        {
            "click": [sys.executable, "-c", "import click"],
            "help": [sys.executable, "-m", "auditor", "--help"],
        },
        max(args.repeat, 11),
        out,
    )

    ours_main, ref_main, naive_main = medians["ours"], medians["reference"], medians["naive"]
    vs_naive = naive_main.wall / ours_main.wall
    vs_reference = ours_main.wall / ref_main.wall
    help_ratio = startup["help"].wall / startup["click"].wall
    print()
    print(f"sweep {MAIN[0]} runs x {MAIN[1]} checkpoints, medians of {args.repeat} rounds")
    print("| command | wall s | CPU s |")
    print("|---|---|---|")
    for name, sample in (
        ("ckpt-audit scan --format json", ours_main),
        ("reference (limit_newest.py)", ref_main),
        ("naive (baseline_naive.py)", naive_main),
    ):
        print(f"| {name} | {sample.wall:.2f} | {sample.cpu:.2f} |")
    print()
    print("| sweep | ours wall s | ours CPU s | reference wall s | ours / reference |")
    print("|---|---|---|---|---|")
    for size in [SCALING[0], MAIN, SCALING[1]]:
        mine, theirs = scaled[size], scaled_reference[size]
        print(
            f"| {size[0]} x {size[1]} | {mine.wall:.2f} | {mine.cpu:.2f} "
            f"| {theirs.wall:.2f} | {mine.wall / theirs.wall:.2f} |"
        )
    if thousands:
        mine, theirs = thousands["ours"], thousands["reference"]
        print(
            f"| {MAIN[0] * MANY_COPIES} x {MAIN[1]} (hard links) | {mine.wall:.2f} | "
            f"{mine.cpu:.2f} | {theirs.wall:.2f} | "
            f"{mine.wall / theirs.wall:.2f} |"
        )
    runs_growth = scaled[MAIN].wall / scaled[SCALING[0]].wall
    ckpts_growth = scaled[MAIN].wall / scaled[SCALING[1]].wall
    # Peak memory, measured apart from the timing rounds (see _PEAK_LAUNCHER).
    memory_sweeps = [sweeps[SCALING[0]], main_sweep, *([many] if many is not None else [])]
    peaks = {sweep: peak_memory(ours(sweep), out) for sweep in memory_sweeps}
    memory_growth = max(peaks.values()) - peaks[memory_sweeps[0]]
    print()
    print(f"naive / ours:           {vs_naive:.1f}x   (target >= {TARGET_VS_NAIVE:g}x)")
    print(f"ours / reference:       {vs_reference:.2f}x  (target <= {TARGET_VS_REFERENCE:g}x)")
    print(
        f"same by CPU time:       naive / ours {naive_main.cpu / ours_main.cpu:.1f}x, "
        f"ours / reference {ours_main.cpu / ref_main.cpu:.2f}x"
    )
    print(f"2x the runs:            {runs_growth:.2f}x the time (target <= 2x: linear or better)")
    print(f"2x the checkpoints:     {ckpts_growth:.2f}x the time (target <= 2x)")
    print(
        "peak memory, back to back: "
        + ", ".join(f"{sweep.name} {peak:.1f} MiB" for sweep, peak in peaks.items())
        + f": {memory_growth:+.1f} MiB at most (target: no growth)"
    )
    print(
        f"--help / import click:  {help_ratio:.2f}x  ({startup['help'].wall * 1000:.0f} ms vs "
        f"{startup['click'].wall * 1000:.0f} ms; target <= {TARGET_HELP_VS_CLICK:g}x)"
    )
    report = report_targets(sweeps[REPORT_SWEEP], max(3, args.repeat // 2), out)
    if mismatches:
        print(f"FAIL: {mismatches} runs differ from the reference in picks or flag")
        return 1
    print("picks and flags: identical to the reference for every run of every sweep")
    missed = [
        name
        for name, ok in (
            ("vs naive", vs_naive >= TARGET_VS_NAIVE),
            ("vs reference", vs_reference <= TARGET_VS_REFERENCE),
            ("--help", help_ratio <= TARGET_HELP_VS_CLICK),
            ("linear in runs", runs_growth <= LINEAR_WITH_NOISE),
            ("linear in checkpoints", ckpts_growth <= LINEAR_WITH_NOISE),
            ("flat memory", memory_growth <= MEMORY_NOISE_MIB),
            *report,
        )
        if not ok
    ]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1 if args.strict else 0
    print("targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
