"""`python -m auditor`: the same as the ckpt-audit command."""

from .cli import run

run()
