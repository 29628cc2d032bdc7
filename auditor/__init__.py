"""checkpoint-auditor: re-rank Hugging Face Trainer checkpoints and flag overfit eval-loss picks.

>>> import auditor
>>> result = auditor.audit("outputs/")            # doctest: +SKIP
>>> [run.verdict for run in result.runs]          # doctest: +SKIP
>>> auditor.score(0.5, 0.45).total                # doctest: +SKIP
"""

from __future__ import annotations

from .api import audit
from .config import Config, Weights, load_config
from .errors import AuditorError, ConfigError, StateFileError, UsageError
from .results import AuditResult, CheckpointResult, DeployJudgement, Pick, RunResult
from .score import Score, score

__version__ = "0.1.0"

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
