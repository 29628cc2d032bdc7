"""The command's exit codes (SPEC section 5), the one place a CI job's contract is spelled."""

#: A report was made; for `check`, no run fails the gate.
OK = 0
#: `check` only: a run (or the checkpoint judged with --deploy) fails the gate.
GATE_FAILED = 1
#: A usage error, no run found, a report that could not be written, or (`check`) a run that
#: could not be read: the gate fails closed.
ERROR = 2


def interrupted(signum: int) -> int:
    """Return the exit code of a command stopped by signal `signum`: 128 + its number, as a
    shell reports it (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + signum
