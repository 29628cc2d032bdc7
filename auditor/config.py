"""The scoring and gate settings, with the SPEC's defaults, loaded from YAML or built in code."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

TRAIN_LOSS_PAIRINGS = ("last", "mean")
METRIC_DIRECTIONS = ("higher", "lower", "ignore")
#: Findings that can fail `check`: a flagged run, a run with no candidate, a disagreement.
FAIL_ON_CHOICES = ("overfit", "no_candidates", "differs")


@dataclass(frozen=True)
class Weights:
    """Weights of the score's terms (SPEC section 3)."""

    eval: float = 0.5
    gap: float = 0.3
    perplexity: float = 0.1


@dataclass(frozen=True)
class Config:
    """Everything that changes a verdict. Defaults are the SPEC's."""

    weights: Weights = field(default_factory=Weights)
    perplexity_cap: float = 20.0
    improvement_bonus: float = -0.1
    min_gap_delta: float = 0.10
    #: None: `eval_loss`, or the run's only `eval_<name>_loss`.
    eval_key: str | None = None
    #: "last": the last logged train loss at or before the eval step (SPEC);
    #: "mean": the mean of the train losses logged since the previous evaluation.
    train_loss: str = "last"
    #: The logged key of the train loss in runs of other frameworks (Lightning, MLflow);
    #: None: the first of loss, train_loss, train_loss_step, train/loss, train_loss_epoch.
    train_key: str | None = None
    #: Where a Lightning run's .ckpt files are when ModelCheckpoint had a dirpath: relative to
    #: the run's version_N/ folder, or absolute; None: version_N/checkpoints/.
    checkpoint_dir: str | None = None
    #: How many times the eval noise the eval-only pick's lower eval loss must exceed to count
    #: as evidence against the flag; None: no noise check (SPEC v2 section 4).
    noise_k: float | None = 2.0
    #: Let task metrics logged at both picks (eval_accuracy, ...) contradict the flag.
    task_metrics: bool = True
    #: A metric's direction by log key (higher, lower or ignore), over the one its name gives.
    metrics: dict[str, str] = field(default_factory=dict)
    fail_on: tuple[str, ...] = ("overfit", "no_candidates")
    #: Let `check` pass runs that cannot be read (the gate fails closed by default).
    allow_unreadable: bool = False

    def replace(self, **changes: Any) -> Config:
        """Return a copy with `changes` applied and validated."""
        merged = self.to_dict()
        for key, value in changes.items():
            if key in ("weight_eval", "weight_gap", "weight_perplexity"):
                merged["weights"][key.removeprefix("weight_")] = value
            else:
                merged[key] = value
        return config_from_mapping(merged, source="command line")

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain data (what `ckpt-audit config` prints)."""
        data = dataclasses.asdict(self)
        data["fail_on"] = list(self.fail_on)
        data["metrics"] = dict(self.metrics)
        return data


_FLOAT_KEYS = ("perplexity_cap", "improvement_bonus", "min_gap_delta")
#: A config is a few hundred bytes; anything this large is another file given by mistake.
MAX_CONFIG_BYTES = 64 * 1024
#: Anchors and aliases are fine YAML; hundreds of them only serve to blow a value up.
MAX_ALIASES = 20
#: Longer numbers than this are no setting (int() of thousands of digits is refused anyway).
_MAX_NUMBER_CHARACTERS = 100

# Values are repeated in messages: a nested or huge value is cut, never written out whole.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 4, 60, 60


def _shown(value: Any) -> str:
    """Return a short repr of `value` for a message, whatever its size or nesting."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return _SHOWN.repr(value)


def _number(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{source}: '{key}' must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{source}: '{key}' must be a finite number, got {_shown(value)}")
    return number


def _at_least_zero(value: Any, key: str, source: str) -> float:
    number = _number(value, key, source)
    if number < 0:
        raise ConfigError(f"{source}: '{key}' must be 0 or more, got {_shown(value)}")
    return number


def config_from_mapping(data: Mapping[str, Any], source: str = "config") -> Config:
    """Return a validated Config from plain data; raise ConfigError naming the key and `source`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the config must be a mapping of keys to values")
    known = {f.name for f in dataclasses.fields(Config)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key '{key}' (known keys: {', '.join(sorted(known))})"
            )
    kwargs: dict[str, Any] = {}
    if "weights" in data:
        raw = data["weights"]
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: 'weights' must be a mapping with eval, gap, perplexity")
        names = {f.name for f in dataclasses.fields(Weights)}
        for key in raw:
            if key not in names:
                raise ConfigError(
                    f"{source}: unknown key 'weights.{key}' (known: eval, gap, perplexity)"
                )
        # A negative weight would reward the very thing its term measures.
        kwargs["weights"] = Weights(
            **{k: _at_least_zero(v, f"weights.{k}", source) for k, v in raw.items()}
        )
    for key in _FLOAT_KEYS:
        if key in data:
            kwargs[key] = _number(data[key], key, source)
    if kwargs.get("perplexity_cap", 1.0) <= 0:
        raise ConfigError(f"{source}: 'perplexity_cap' must be greater than 0")
    if "min_gap_delta" in kwargs:
        _at_least_zero(kwargs["min_gap_delta"], "min_gap_delta", source)
    if "eval_key" in data:
        value = data["eval_key"]
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{source}: 'eval_key' must be a key name such as eval_loss")
        kwargs["eval_key"] = value
    if "train_key" in data:
        value = data["train_key"]
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{source}: 'train_key' must be a key name such as train_loss")
        kwargs["train_key"] = value
    if "checkpoint_dir" in data:
        value = data["checkpoint_dir"]
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(
                f"{source}: 'checkpoint_dir' must be a folder such as ../../checkpoints"
            )
        kwargs["checkpoint_dir"] = value
    if "train_loss" in data:
        value = data["train_loss"]
        if value not in TRAIN_LOSS_PAIRINGS:
            raise ConfigError(
                f"{source}: 'train_loss' must be one of {', '.join(TRAIN_LOSS_PAIRINGS)},"
                f" got {_shown(value)}"
            )
        kwargs["train_loss"] = value
    if "fail_on" in data:
        value = data["fail_on"]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or any(v not in FAIL_ON_CHOICES for v in value):
            raise ConfigError(
                f"{source}: 'fail_on' must be a list drawn from {', '.join(FAIL_ON_CHOICES)},"
                f" got {_shown(value)}"
            )
        kwargs["fail_on"] = tuple(value)
    if "noise_k" in data:
        value = data["noise_k"]
        kwargs["noise_k"] = None if value is None else _at_least_zero(value, "noise_k", source)
    if "task_metrics" in data:
        if not isinstance(data["task_metrics"], bool):
            raise ConfigError(f"{source}: 'task_metrics' must be true or false")
        kwargs["task_metrics"] = data["task_metrics"]
    if "metrics" in data:
        kwargs["metrics"] = _metrics(data["metrics"], source)
    if "allow_unreadable" in data:
        value = data["allow_unreadable"]
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: 'allow_unreadable' must be true or false")
        kwargs["allow_unreadable"] = value
    return Config(**kwargs)


def _metrics(value: Any, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise ConfigError(
            f"{source}: 'metrics' must map log keys to higher, lower or ignore, "
            "e.g. {eval_bleu: higher}"
        )
    for key, direction in value.items():
        if direction not in METRIC_DIRECTIONS:
            raise ConfigError(
                f"{source}: 'metrics.{key}' must be one of {', '.join(METRIC_DIRECTIONS)},"
                f" got {_shown(direction)}"
            )
    # Keys are matched as logged; `bleu` means the Trainer's `eval_bleu`.
    return {k if k.startswith("eval_") else f"eval_{k}": v for k, v in value.items()}


# PyYAML follows YAML 1.1, where `1e-3` (no dot) is a string; people write it as a number.
_FLOAT_1_2 = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _loader() -> type:
    import yaml

    merge_tag = "tag:yaml.org,2002:merge"

    class Loader(yaml.SafeLoader):
        """Safe loader that reads 1e-3 as a float, refuses a key given twice, a key that is
        not a name, a number too long to be a setting and more than MAX_ALIASES aliases."""

        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    line = self.peek_event().start_mark.line + 1
                    raise ConfigError(
                        f"more than {MAX_ALIASES} aliases (line {line}): a config needs few, "
                        "and many only blow it up"
                    )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == merge_tag:
                    continue  # `<<: *defaults`: its keys may be overridden here, not repeated
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if isinstance(key, (list, dict)):
                    raise ConfigError(
                        f"a key must be a name, not a {type(key).__name__} (line {line})"
                    )
                if key in seen:
                    raise ConfigError(f"'{key}' is given twice (line {line})")
                seen.add(key)
            return dict(super().construct_mapping(node, deep=deep))

        def construct_yaml_int(self, node: Any) -> int:
            if len(str(node.value)) > _MAX_NUMBER_CHARACTERS:
                raise ConfigError(
                    f"a number of {len(str(node.value))} characters (line "
                    f"{node.start_mark.line + 1}) is too long to be a setting"
                )
            return int(super().construct_yaml_int(node))

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))
    return Loader


def load_config(path: str | os.PathLike[str]) -> Config:
    """Return the Config stored in the YAML file at `path`; raise ConfigError on any problem."""
    import yaml

    name = os.fspath(path)
    try:
        text = _read_config_text(name)
        data = yaml.load(text, Loader=_loader())  # a SafeLoader: builds plain data only
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the config file ({exc.strerror})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: not valid YAML ({exc})") from exc
    if data is None:
        return Config()
    return config_from_mapping(data, source=name)


def _read_config_text(name: str) -> str:
    """Return the text of the config file `name`: a regular file of MAX_CONFIG_BYTES or less.

    Opened without blocking, so a pipe or device in its place is refused, not waited on.
    """
    descriptor = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        mode = info.st_mode
        if stat.S_ISCHR(mode) and os.path.samestat(info, os.stat(os.devnull)):
            return ""  # `--config /dev/null`: the defaults, whatever ./.ckpt-audit.yaml says
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a pipe or a device"
            raise ConfigError(f"cannot read the config file (it is {kind}, not a file)")
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"cannot read the config file (larger than {MAX_CONFIG_BYTES // 1024} KiB: a config "
            "is a few hundred bytes; is it the right file?)"
        )
    return data.decode("utf-8")


# What each key means, printed above it by `ckpt-audit config`.
_COMMENTS = {
    "weights": "Weights of the score's terms (lower score is better):\n"
    "  eval * eval_loss + gap * |train_loss - eval_loss| / eval_loss\n"
    "  + perplexity * min(exp(eval_loss) / perplexity_cap, 1) + improvement_bonus",
    "perplexity_cap": "The perplexity term is min(exp(eval_loss) / perplexity_cap, 1).",
    "improvement_bonus": "Added to the score when an evaluation sets a new best eval loss.",
    "min_gap_delta": "A run is flagged when the eval-only pick overfits by at least this much\n"
    "more than the scorer's pick (overfit = max(0, eval - train) / eval), and the held-out\n"
    "evidence (noise_k, task_metrics) does not say it is better.",
    "noise_k": "Not flagged when the eval-only pick's eval loss is lower by more than noise_k\n"
    "times the eval noise of the run's curve; null: no noise check.",
    "task_metrics": "Not flagged when a task metric logged at both picks (eval_accuracy, f1,\n"
    "wer, ...) rates the eval-only pick better by more than noise_k times its noise.",
    "metrics": "A metric's direction by log key (higher, lower or ignore), over the one its\n"
    "name gives, e.g. {eval_bleu: higher, eval_length: ignore}.",
    "eval_key": "Log key of the selection loss; null: per run, eval_loss, else the Trainer's\n"
    "own selection loss, else the run's only eval_<name>_loss.",
    "train_loss": "Train loss paired with an evaluation: last (the last logged at or before\n"
    "its step) or mean (the mean of those logged since the previous evaluation).",
    "train_key": "Logged key of the train loss in Lightning and MLflow runs; null: the first\n"
    "of loss, train_loss, train_loss_step, train/loss, train_loss_epoch the run logs.",
    "checkpoint_dir": "Folder of a Lightning run's .ckpt files when ModelCheckpoint had a\n"
    "dirpath (relative to the run's version_N/ folder, or absolute); null: its checkpoints/.",
    "fail_on": "Verdicts that fail `ckpt-audit check` (exit 1): any of overfit, differs,\n"
    "no_candidates (a run that could not be judged).",
    "allow_unreadable": "Let `check` pass runs that cannot be read (it fails closed by default).",
}


def to_yaml(config: Config, comments: bool = True) -> str:
    """Return the config as a complete YAML document, each key with a comment unless told not."""
    import yaml

    parts = []
    if comments:
        parts.append(
            "# checkpoint-auditor config (ckpt-audit --config FILE, or ./.ckpt-audit.yaml).\n"
            "# Every key is optional: a key left out takes the value shown here.\n"
        )
    for key, value in config.to_dict().items():
        if comments:
            parts.append("\n" + "".join(f"# {line}\n" for line in _COMMENTS[key].splitlines()))
        parts.append(str(yaml.safe_dump({key: value}, sort_keys=False)))
    return "".join(parts)
