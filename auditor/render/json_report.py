"""The JSON report of SPEC section 6: strict RFC 8259 (non-finite numbers become null)."""

from __future__ import annotations

from ..fastjson import dumps_indented
from ..results import AuditResult


def render(result: AuditResult, view: str = "runs") -> str:
    """Return the schema_version 1 JSON report; the same document for every view."""
    return dumps_indented(result.to_dict()) + "\n"
