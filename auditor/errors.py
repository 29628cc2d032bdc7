"""The auditor's own exceptions: the CLI turns each into a message and exit code 2."""

from __future__ import annotations


class AuditorError(Exception):
    """Base class of every error the auditor raises on purpose."""


class ConfigError(AuditorError):
    """A config file or option is invalid; the message names the key and the file."""


class UsageError(AuditorError):
    """The caller asked for something that cannot be done (bad path, unknown checkpoint)."""


class StateFileError(AuditorError):
    """A trainer_state.json could not be read; the message names the file and the fix.

    `unreadable` is True when the file is there but the system would not read it (permissions,
    an I/O error): unlike a missing or half-written file, that is no save in progress.
    """

    def __init__(self, path: str, reason: str, unreadable: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.unreadable = unreadable

    @classmethod
    def not_text(cls, path: str, exc: UnicodeDecodeError) -> StateFileError:
        """Return the error for a log file holding bytes that are not UTF-8 text."""
        return cls(
            path, f"is not UTF-8 text (binary data at byte {exc.start}); restore the real file"
        )


class ReportWriteError(AuditorError):
    """A report file could not be written."""
