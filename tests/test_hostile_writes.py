"""Where reports go: never into an audited run, never over a device, never half, never left
behind by an interrupt; closed or full standard streams give exit 2, not a traceback."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_readonly import snapshot

from auditor.cli import main
from conftest import FIXTURES

FLAGGED = "real_overfit_flagged"
HEALTHY = "sweep/run-0001"
INTERRUPTS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env={"GITHUB_STEP_SUMMARY": "", **(env or {})})


def command(*args: str, **popen: object) -> subprocess.Popen[bytes]:
    """Start `python -m auditor ARGS` as a process of its own (real descriptors and signals)."""
    return subprocess.Popen([sys.executable, "-m", "auditor", *args], **popen)  # type: ignore[call-overload]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a report write left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (read from /proc, as ps does)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.fixture
def runs(copy_run, monkeypatch, tmp_path: Path) -> Path:
    """A flagged and a healthy run under tmp_path (the current directory); returns tmp_path."""
    monkeypatch.chdir(tmp_path)
    copy_run(FLAGGED, "flagged")
    copy_run(HEALTHY, "healthy")
    return tmp_path


# --- writes that would land inside an audited run -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("scan", "flagged", "-o", "flagged/trainer_state.json"),
        ("scan", "flagged", "--format", "json", "-o", "flagged/trainer_state.json"),
        ("scan", ".", "-o", "flagged/checkpoint-90/trainer_state.json"),
        ("check", "flagged", "--format", "junit", "-o", "flagged/new-report.xml"),
        ("show", "flagged", "-o", "flagged/checkpoint-100/steps.csv"),
        ("report", "healthy", "-o", "healthy/report.html"),
        ("plot", "healthy", "-o", "healthy/curve.svg"),
        (
            "scan",
            "flagged/checkpoint-90/trainer_state.json",
            "-o",
            "flagged/checkpoint-90/trainer_state.json",
        ),
    ],
    ids=[
        "root file",
        "root file, streamed json",
        "checkpoint file",
        "new file",
        "show",
        "report",
        "plot",
        "bare file",
    ],
)
def test_a_report_is_never_written_inside_an_audited_run(runs, args):
    before = snapshot(runs)

    result = cli(*args)

    assert result.exit_code == 2, result.output
    target = args[-1]
    assert f"error: -o {target}: that is inside the audited run " in result.stderr
    assert "give -o a path outside it" in result.stderr
    assert snapshot(runs) == before


def test_a_database_holding_an_audited_run_is_never_written(copy_run, runs):
    copy_run("frameworks/mlflow_sqlite", "mlflow")
    before = snapshot(runs)

    result = cli("scan", "mlflow", "-o", "mlflow/mlflow.db")

    assert result.exit_code == 2, result.output
    # A streamed report refuses before any run is audited, naming the folder found (mlflow);
    # a report made whole names the database's run (mlflow/mlflow.db/<run id>).
    assert "error: -o mlflow/mlflow.db: that is inside the audited run mlflow" in result.stderr
    assert snapshot(runs) == before


def test_a_link_into_an_audited_run_is_refused_where_it_lands(runs):
    (runs / "out.json").symlink_to(runs / "flagged" / "trainer_state.json")
    before = snapshot(runs)

    result = cli("scan", "flagged", "-o", "out.json")

    assert result.exit_code == 2
    assert "that is inside the audited run flagged" in result.stderr
    assert snapshot(runs) == before


def test_report_by_default_is_refused_from_inside_the_run(runs, monkeypatch):
    monkeypatch.chdir(runs / "healthy")
    before = snapshot(runs)

    result = cli("report", ".")

    assert result.exit_code == 2
    assert "error: -o report.html: that is inside the audited run ." in result.stderr
    assert snapshot(runs) == before


def test_a_step_summary_naming_an_audited_file_is_refused(runs):
    before = snapshot(runs)
    summary = "flagged/trainer_state.json"

    result = cli("check", ".", "-o", "gate.txt", env={"GITHUB_STEP_SUMMARY": summary})

    assert result.exit_code == 2
    assert f"error: GITHUB_STEP_SUMMARY={summary}: that is inside the audited run" in result.stderr
    assert "--no-step-summary" in result.stderr
    assert not (runs / "gate.txt").exists()  # refused before anything is written
    assert snapshot(runs) == before
    passed = cli("check", ".", "--no-step-summary", env={"GITHUB_STEP_SUMMARY": summary})
    assert passed.exit_code == 1  # the flagged run, judged as usual
    assert snapshot(runs) == before


def test_a_report_beside_the_runs_is_still_written(runs):
    result = cli("scan", ".", "-o", "audit.txt")

    assert result.exit_code == 0
    assert "flagged" in (runs / "audit.txt").read_text()


# --- special files, links and long names ----------------------------------------------------


def test_a_symlink_is_followed_and_stays_a_symlink(runs):
    (runs / "reports").mkdir()
    (runs / "reports" / "latest.csv").write_text("old\n")
    (runs / "link.csv").symlink_to("reports/latest.csv")

    result = cli("scan", "flagged", "--format", "csv", "-o", "link.csv")

    assert result.exit_code == 0
    assert (runs / "link.csv").is_symlink()
    assert (runs / "reports" / "latest.csv").read_text().startswith("run_dir,")
    assert leftovers(runs) == leftovers(runs / "reports") == []


def test_a_full_device_is_exit_2_and_stays_a_device(runs):
    # Through a link of our own: a regression must not replace the machine's /dev/full.
    (runs / "full").symlink_to("/dev/full")

    result = cli("scan", "flagged", "-o", "full")

    assert result.exit_code == 2
    assert "error: cannot write full: No space left on device" in result.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert (runs / "full").is_symlink()
    assert leftovers(runs) == []


def test_a_character_device_is_written_in_place(runs):
    (runs / "null").symlink_to("/dev/null")

    result = cli("scan", "flagged", "--format", "json", "-o", "null")

    assert result.exit_code == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(runs) == []


def test_a_fifo_gets_the_report_and_stays_a_fifo(runs):
    fifo = runs / "pipe"
    os.mkfifo(fifo)
    # A reader on the pipe before the command starts; one run's report fits in its buffer.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = cli("scan", "flagged", "--format", "json", "-o", "pipe")
        received = os.read(reader, 1 << 20)
    finally:
        os.close(reader)

    assert result.exit_code == 0
    assert received.startswith(b'{\n  "schema_version": ')
    assert received.endswith(b"}\n")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_fifo_nobody_reads_is_exit_2_at_once(runs):
    os.mkfifo(runs / "pipe")

    started = time.monotonic()
    result = cli("scan", "flagged", "-o", "pipe")

    assert time.monotonic() - started < 30
    assert result.exit_code == 2
    assert "error: cannot write pipe: it is a pipe that no program is reading" in result.stderr
    assert stat.S_ISFIFO(os.lstat(runs / "pipe").st_mode)


def test_a_step_summary_fifo_nobody_reads_never_hangs_the_gate(runs):
    os.mkfifo(runs / "summary")

    result = cli("check", "healthy", env={"GITHUB_STEP_SUMMARY": "summary"})

    assert result.exit_code == 0
    assert "warning: GITHUB_STEP_SUMMARY: cannot append to summary: it is a pipe" in result.stderr


def test_the_descriptor_name_of_stdout_writes_to_stdout(runs):
    with open(runs / "captured.json", "wb") as out:
        done = command("scan", "flagged", "--format", "json", "-o", "/dev/fd/1", stdout=out)
        assert done.wait(60) == 0
    assert (runs / "captured.json").read_bytes().startswith(b'{\n  "schema_version": ')


def test_a_name_of_254_bytes_is_written(runs):
    name = "r" * 249 + ".json"

    result = cli("scan", "flagged", "--format", "json", "-o", name)

    assert result.exit_code == 0, result.stderr
    assert (runs / name).read_bytes().startswith(b'{\n  "schema_version": ')
    assert leftovers(runs) == []


# --- interrupts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_sweep(tmp_path_factory) -> Path:
    """3,000 hard-linked copies of one run: a scan that takes a second or two with workers."""
    # Linked to a copy, not to the repository, which may be on another file system.
    source = tmp_path_factory.mktemp("source") / "run"
    shutil.copytree(FIXTURES / FLAGGED, source)
    files = [p.relative_to(source) for p in source.rglob("*") if p.is_file()]
    sweep = tmp_path_factory.mktemp("big")
    for index in range(3000):
        run = sweep / f"run-{index:04d}"
        for name in files:
            (run / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(source / name, run / name)
    return sweep


def interrupt_mid_audit(big_sweep: Path, signum: int, *args: str) -> tuple[int, str, list[int]]:
    """Start `ARGS big_sweep` with two workers, send `signum` once its workers run (and, with
    -o, its temporary file exists); return the exit code, stderr and the workers' pids."""
    process = command(
        *args,
        str(big_sweep),
        env={**os.environ, "CKPT_AUDIT_JOBS": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def started() -> bool:
        return bool(children_of(process.pid)) and ("-o" not in args or bool(leftovers(Path.cwd())))

    deadline = time.monotonic() + 30
    while not started() and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = children_of(process.pid)
    assert started(), "the command ended before it could be interrupted"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr.decode(), workers


@pytest.mark.parametrize("signum", sorted(INTERRUPTS), ids=lambda s: signal.Signals(s).name)
def test_an_interrupt_leaves_no_file_and_no_process(big_sweep, tmp_path, monkeypatch, signum):
    monkeypatch.chdir(tmp_path)

    code, stderr, workers = interrupt_mid_audit(
        big_sweep, signum, "scan", "--format", "json", "-o", "out.json"
    )

    assert code == INTERRUPTS[signum]
    assert stderr.endswith(f"error: interrupted by {signal.Signals(signum).name}\n")
    assert "Traceback" not in stderr
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "out.json").exists()
    assert [pid for pid in workers if os.path.exists(f"/proc/{pid}")] == []


def test_an_interrupt_while_the_gate_audits_exits_130_not_1(big_sweep):
    code, stderr, workers = interrupt_mid_audit(big_sweep, signal.SIGINT, "check")

    assert code == 130, stderr
    assert "Aborted" not in stderr
    assert [pid for pid in workers if os.path.exists(f"/proc/{pid}")] == []


# --- standard streams, worker settings ---------------------------------------------------------


def _closed(descriptor: int):
    return lambda: os.close(descriptor)


@pytest.mark.parametrize("args", [("check",), ("scan", "--format", "json")])
def test_a_closed_stdout_is_exit_2_not_a_silent_pass(runs, args):
    done = subprocess.run(
        [sys.executable, "-m", "auditor", *args, "healthy"],
        preexec_fn=_closed(1),
        capture_output=False,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"error: stdout is closed, so the report has nowhere to go: pass -o FILE" in done.stderr


def test_a_closed_stdout_still_takes_a_report_file(runs):
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "scan", "healthy", "-o", "audit.txt"],
        preexec_fn=_closed(1),
        stderr=subprocess.PIPE,
        timeout=60,
    )
    assert done.returncode == 0
    assert "healthy" in (runs / "audit.txt").read_text()


@pytest.mark.parametrize(("run", "code"), [("healthy", 0), ("flagged", 1), ("missing", 2)])
def test_a_closed_stderr_keeps_the_exit_code(runs, run, code):
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "check", run],
        preexec_fn=_closed(2),
        stdout=subprocess.PIPE,
        timeout=60,
    )
    assert done.returncode == code


def test_a_full_stdout_is_exit_2(runs):
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "auditor", "check", "healthy"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.decode().splitlines()[-1] == (
        "error: cannot write the report to stdout: No space left on device"
    )


@pytest.mark.parametrize("value", ["²", "two", "-1"])
def test_a_worker_count_that_is_not_a_number_is_exit_2(runs, value):
    result = cli("scan", "healthy", env={"CKPT_AUDIT_JOBS": value})

    assert result.exit_code == 2
    assert f"error: CKPT_AUDIT_JOBS={value!r}: not a whole number of worker processes" in (
        result.stderr
    )


def test_a_worker_count_of_5000_digits_just_works(runs):
    result = cli("scan", ".", env={"CKPT_AUDIT_JOBS": "9" * 5000})

    assert result.exit_code == 0
    assert "OVERFIT" in result.stdout


def test_many_workers_under_a_low_open_file_limit(big_sweep):
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    done = subprocess.run(
        [sys.executable, "-m", "auditor", "scan", str(big_sweep), "--format", "csv", "-q"],
        env={**os.environ, "CKPT_AUDIT_JOBS": "500"},
        preexec_fn=low_limit,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stderr == b""
    assert done.stdout.count(b",overfit,") == 3000
