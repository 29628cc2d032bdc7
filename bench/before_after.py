"""Time `ckpt-audit scan SWEEP --format json` of this tree against earlier commits', in the same
alternating rounds on the same sweep: the ratios say what the changes since cost.

    python3 bench/before_after.py ca6480f ffeb364            # the 200 x 20 sweep, 5 rounds
    python3 bench/before_after.py ca6480f --tiny --rounds 3  # the 20,000 tiny runs instead

The sweeps are those of bench/run.py (generated into /tmp once, from ../shared/bench or
--scripts DIR). Each commit's `auditor` package is taken with `git archive` and compiled to
bytecode first, as an installed copy would be.
"""

from __future__ import annotations

import argparse
import compileall
import subprocess
import sys
import tempfile
from pathlib import Path

from run import MAIN, REPO, alternate, ensure_sweep
from scale import TINY, ensure_tiny

#: Runs `python -m auditor ARGS` with the package found first in the folder given first.
_FROM = "import sys; sys.path.insert(0, sys.argv.pop(1)); from auditor.cli import run; run()"


def command(tree: Path, sweep: Path) -> list[str]:
    """Return the scan of `sweep` by the auditor package in `tree`."""
    return [sys.executable, "-c", _FROM, str(tree), "scan", str(sweep), "--format", "json", "-q"]


def checkout(ref: str, into: Path) -> Path:
    """Return a folder holding the `auditor` package of commit `ref`, compiled."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "auditor"], capture_output=True, check=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    compileall.compile_dir(str(into / "auditor"), quiet=1)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refs", nargs="+", help="the commits to compare with (refs git knows)")
    parser.add_argument("--scripts", type=Path, default=REPO.parent / "shared" / "bench")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ckpt-audit-bench"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="20,000 runs of 3 checkpoints")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        sweep = ensure_tiny(args.scripts, args.workdir, TINY[0])
    else:
        sweep = ensure_sweep(args.scripts, args.workdir, *MAIN)
    compileall.compile_dir(str(REPO / "auditor"), quiet=1)
    with tempfile.TemporaryDirectory() as scratch:
        commands = {ref: command(checkout(ref, Path(scratch) / ref), sweep) for ref in args.refs}
        commands["this tree"] = command(REPO, sweep)
        alternate(commands, 1, Path(scratch))  # warm the page cache and every tree
        found = alternate(commands, args.rounds, Path(scratch))
    now = found["this tree"]
    print(f"{sweep.name}, medians of {args.rounds} alternating rounds (wall s, CPU s):")
    for name, sample in found.items():
        ratio = "" if name == "this tree" else f"  this tree / {name}: {now.wall / sample.wall:.3f}"
        print(f"  {name:>10}: {sample.wall:6.2f} {sample.cpu:6.2f}{ratio}")


if __name__ == "__main__":
    main()
