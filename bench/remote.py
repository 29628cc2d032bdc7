"""Benchmark `ckpt-audit scan s3://...` on a 200 x 20 sweep in a local S3 server (moto): the
requests and bytes it reads against the minimum, and its wall time against a script that only
downloads each run's newest trainer_state.json with s3fs, concurrently.

    python3 bench/remote.py                      # the sweep of bench/run.py, 3 rounds
    python3 bench/remote.py --sweep DIR --rounds 5

Needs the remote extra and moto[server] (`pip install -e '.[remote,test]'`). The minimum, per
run: one listing, the newest trainer_state.json whole, and of every other one its head and its
tail (or the whole file when that is smaller than both).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from servers.stores import s3_server  # noqa: E402

from auditor.sources.trainer_ends import end_ranges  # noqa: E402

BUCKET = "bench"
STATE = "trainer_state.json"
# Only each run's newest file, downloaded concurrently: what a hand-written remote check costs.
NEWEST_ONLY = """
import re, sys, s3fs
fs = s3fs.S3FileSystem()
root = sys.argv[1]
newest = []
for run in fs.ls(root):
    names = [p for p in fs.ls(run) if re.search(r"checkpoint-\\d+$", p)]
    last = max(names, key=lambda p: int(p.rsplit("-", 1)[1]))
    newest.append(f"{last}/trainer_state.json")
data = fs.cat(newest)
print(len(data), sum(len(v) for v in data.values()))
"""


def minimum(sweep: Path) -> tuple[int, int]:
    """Return the fewest requests and bytes that audit `sweep` as the auditor must."""
    requests = received = 0
    for run in sorted(p for p in sweep.iterdir() if p.is_dir()):
        files = sorted(run.glob(f"checkpoint-*/{STATE}"), key=lambda p: int(p.parent.name[11:]))
        newest = run / STATE if (run / STATE).is_file() else files[-1]
        older = [p for p in files if p != newest]
        requests += 1 + 1 + sum(len(end_ranges(p.stat().st_size)) for p in older)
        received += newest.stat().st_size
        received += sum(b - a for p in older for a, b in end_ranges(p.stat().st_size))
    return requests, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("/tmp/ckpt-audit-bench/sweep-200x20"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.sweep.is_dir():
        sys.exit(f"{args.sweep}: no such sweep; run bench/run.py once, or gen_sweep.py")
    with s3_server() as env:
        os.environ.update(env)
        import fsspec

        s3 = fsspec.filesystem("s3")
        s3.mkdir(BUCKET)
        files = {
            f"{BUCKET}/sweep/{p.relative_to(args.sweep).as_posix()}": p.read_bytes()
            for p in sorted(args.sweep.rglob(STATE))
        }
        started = time.perf_counter()
        s3.pipe(files)
        print(f"uploaded {len(files)} files in {time.perf_counter() - started:.1f} s")
        url = f"s3://{BUCKET}/sweep"
        ours: list[float] = []
        theirs: list[float] = []
        read = ""
        for _ in range(args.rounds):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "auditor", "scan", url, "--format", "json"],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            ours.append(time.perf_counter() - started)
            read = done.stderr
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", NEWEST_ONLY, f"{BUCKET}/sweep"],
                capture_output=True,
                check=True,
            )
            theirs.append(time.perf_counter() - started)
    match = re.search(r"read (\d+) requests, ([\d.]+) MB", read)
    if match is None:
        sys.exit(f"no read summary on stderr:\n{read}")
    least, least_bytes = minimum(args.sweep)
    requests, megabytes = int(match.group(1)), float(match.group(2))
    print(f"requests: {requests} (minimum {least}, ratio {requests / least:.3f})")
    print(
        f"bytes: {megabytes:.1f} MB (minimum {least_bytes / 1e6:.1f} MB, "
        f"ratio {megabytes * 1e6 / least_bytes:.3f})"
    )
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(
        f"wall: scan {ours_s:.2f} s, newest files only with s3fs {theirs_s:.2f} s "
        f"(ratio {ours_s / theirs_s:.2f}; medians of {args.rounds} alternating rounds)"
    )


if __name__ == "__main__":
    main()
