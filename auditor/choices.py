"""The names the command line offers (config file, sort keys), light enough for `--help`."""

#: The config file picked up from the working directory when no --config is given.
DEFAULT_CONFIG_NAME = ".ckpt-audit.yaml"

#: How `scan --sort` can order runs.
SORT_KEYS = ("run", "verdict", "score", "eval_loss", "gap")

#: An -o file with one of these suffixes gets the audit appended as SQLite (auditor.history).
HISTORY_SUFFIXES = (".sqlite", ".sqlite3")

#: The format an -o file gets from its suffix when --format is not given (any other: table).
FORMAT_OF_SUFFIX = {
    ".json": "json",
    ".csv": "csv",
    ".md": "markdown",
    ".markdown": "markdown",
    ".xml": "junit",
    ".html": "html",
    ".htm": "html",
    **dict.fromkeys(HISTORY_SUFFIXES, "sqlite"),
}
