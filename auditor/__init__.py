"""checkpoint-auditor: re-rank Hugging Face Trainer checkpoints and flag overfit eval-loss picks."""

from __future__ import annotations

from .config import Config, Weights, load_config
from .errors import AuditorError, ConfigError, StateFileError, UsageError
from .score import Score, score

__version__ = "0.1.0"

__all__ = [
    "AuditorError",
    "Config",
    "ConfigError",
    "Score",
    "StateFileError",
    "UsageError",
    "Weights",
    "__version__",
    "load_config",
    "score",
]
