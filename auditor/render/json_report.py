"""The JSON report of SPEC section 6: strict RFC 8259 (non-finite numbers become null)."""

from __future__ import annotations

import json

from ..results import AuditResult


def render(result: AuditResult, view: str = "runs") -> str:
    """Return the schema_version 1 JSON report; the same document for every view."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
