"""checkpoint-auditor: re-rank Hugging Face Trainer checkpoints and flag overfit eval-loss picks.

>>> import auditor
>>> result = auditor.audit("outputs/")            # doctest: +SKIP
>>> [run.verdict for run in result.runs]          # doctest: +SKIP
>>> auditor.score(0.5, 0.45).total                # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import audit
    from .config import Config, Weights, load_config
    from .errors import AuditorError, ConfigError, StateFileError, UsageError
    from .results import AuditResult, CheckpointResult, DeployJudgement, Pick, RunResult
    from .scoring import Score, score

__version__ = "0.1.0"

# Imported on first use, so `ckpt-audit --help` does not load the whole audit.
_EXPORTED_FROM = {
    "audit": "api",
    "Config": "config",
    "Weights": "config",
    "load_config": "config",
    "AuditorError": "errors",
    "ConfigError": "errors",
    "StateFileError": "errors",
    "UsageError": "errors",
    "AuditResult": "results",
    "CheckpointResult": "results",
    "DeployJudgement": "results",
    "Pick": "results",
    "RunResult": "results",
    "Score": "scoring",
    "score": "scoring",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTED_FROM))


__all__ = [
    "AuditResult",
    "AuditorError",
    "CheckpointResult",
    "Config",
    "ConfigError",
    "DeployJudgement",
    "Pick",
    "RunResult",
    "Score",
    "StateFileError",
    "UsageError",
    "Weights",
    "__version__",
    "audit",
    "load_config",
    "score",
]
