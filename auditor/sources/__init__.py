"""The Source protocol every training framework's reader follows, and the SOURCES registry.

A source turns the files of one framework's run into a neutral `RunRecord`; everything after
it (pairing, scoring, picks, evidence, every report) reads only that record. Adding a framework
is one module in this package, which registers its source, plus its name in the import at the
end of this module (the order there is the order a folder is offered to the sources).

How a source is used:

1. `discover` lists each folder below the paths given, once, through `auditor.storage`, and
   offers the listing to each source in `SOURCES` order: `find(folder)` returns a `Found` when
   the folder is a run of that framework, else None. The first source that finds a run owns
   the folder; the subfolders named in `Found.owned` (checkpoint folders, log folders) are not
   walked further, the others are (a sweep holds runs below runs). A file given by itself on
   the command line is offered to `find_file(entry)`.
2. `read(found, storage, config)` reads the run's files, only through `storage` (never
   `open`/`os`: the run may be in S3, GCS or on the Hub), and returns one `RunRecord` per
   training the folder holds (usually one). It raises `auditor.errors.StateFileError` (or the
   storage's `ReadError`) when nothing usable can be read: the message names the file and the
   fix, and the run becomes an error row while the other runs go on. Problems that leave the
   run usable are `RunRecord.warnings`. A source never unpickles and never writes.
   `read` runs in a worker process, thread or Dask worker: `Found` must pickle, and `read`
   must not rely on state set up by `find`.
3. Cost: read each run's newest file whole and older files by ranges when that is enough;
   `storage.read_ranges` sends a batch of requests at once, so ask for a run's files together.

What a RunRecord holds (see its fields): the run's scalars as `history`, a list of log entries
in the Hugging Face Trainer's `log_history` shape, oldest first, a later entry for the same step
and key overriding an earlier one:

    {"step": 100, "loss": 1.23, "epoch": 0.5}                       # a training log
    {"step": 100, "eval_loss": 1.31, "eval_accuracy": 0.71}         # an evaluation

Train loss under "loss"; every evaluation value under "eval_<name>" (the evaluation loss as
"eval_loss", other losses as "eval_<set>_loss"); `step` a whole number. A framework that logs
under other names (`val_loss`, `train/loss`) maps them here, so "is this an eval loss" stays
decided in one place (`auditor.pair`). The checkpoints on disk (step, name as the user sees it,
and whether it can be a candidate), the framework's recorded best when it records one, and the
settings that change how a pick is read, when known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..errors import StateFileError
from ..storage import Entry, Storage, for_path

if TYPE_CHECKING:
    from ..config import Config
    from ..pair import Digest


class Folder(NamedTuple):
    """A folder as listed once by discover: its path (or URL), its entries sorted by name, and
    whether the user named it directly (a checkpoint folder given alone is a history-only run)."""

    path: str
    entries: tuple[Entry, ...]
    given: bool = False
    #: Lists a subfolder (its entries; none when it cannot be listed), for a source that must
    #: look one level down to decide; the walk reuses that listing when it gets there.
    look: Callable[[str], tuple[Entry, ...]] | None = None

    def entry(self, name: str) -> Entry | None:
        """Return the entry called `name`, or None."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None


class Found(NamedTuple):
    """A run a source found: enough to read it later, in another process or machine (a
    tuple: thousands are sent to the worker processes, where a dataclass costs five times the
    time to unpickle).

    `source` is the registry name of the source that found it; `run_dir` the folder reported as
    the run's location; `owned` the names of subfolders that belong to this run and must not be
    walked for more runs; `history_only` True when the run has no checkpoints to choose among
    (every evaluated step is then a candidate); `notes` warnings about the listing itself;
    `detail` anything else the source wants back in `read` (picklable: paths, names, sizes).
    """

    source: str
    run_dir: str
    owned: tuple[str, ...] = ()
    history_only: bool = False
    notes: tuple[str, ...] = ()
    detail: tuple[Any, ...] = ()
    #: Why a path is no run that can be read (a stray file given by the user, a folder the walk
    #: cannot enter): reading it raises this, an error row; it is never skipped.
    refused: str | None = None


class Checkpoint(NamedTuple):
    """A checkpoint that exists: its step, its name as the user sees it (`checkpoint-500`,
    `epoch=2-step=500.ckpt`), and `usable` False when it cannot be a candidate (its files are
    broken, or it belongs to another training); say why in the record's warnings."""

    name: str
    step: int
    usable: bool = True


class Best(NamedTuple):
    """What the framework recorded as its best checkpoint. Any field may be None.

    `checkpoint`: the checkpoint as recorded (a path is fine: the last `checkpoint-N` part is
    used); `step`: its step; `metric`: the logged key it was chosen on (`eval_loss`); `value`:
    that metric's best value (used to find the metric when `metric` is None);
    `greater_is_better`: the direction, when recorded.
    """

    checkpoint: str | None = None
    step: int | None = None
    metric: str | None = None
    value: float | None = None
    greater_is_better: bool | None = None


class Settings(NamedTuple):
    """Training settings that change how a pick is read, when the framework records them."""

    load_best_model_at_end: bool | None = None
    save_total_limit: int | None = None


@dataclass(frozen=True)
class RunRecord:
    """One training as read from its files: everything the audit needs, nothing framework-bound.

    `training`/`trainings`: which of the folder's trainings this is (1 the oldest) and how many
    the folder holds, when a folder was reused by several trainings.
    """

    run_dir: str
    source: str
    history: list[dict[str, Any]]
    checkpoints: tuple[Checkpoint, ...] = ()
    history_only: bool = False
    best: Best = field(default_factory=Best)
    settings: Settings = field(default_factory=Settings)
    warnings: tuple[str, ...] = ()
    training: int = 1
    trainings: int = 1
    #: Steps whose checkpoint now holds another training's files.
    overwritten: frozenset[int] = field(default_factory=frozenset)
    #: The file the history was read from, when it is one file.
    history_path: str | None = None
    #: `auditor.pair.digest_history(history)`, when the source computed it already.
    history_digest: Digest | None = field(default=None, compare=False, repr=False)

    @property
    def digest(self) -> Digest:
        """Return the Digest of the history (computed here when the source did not)."""
        if self.history_digest is not None:
            return self.history_digest
        from ..pair import digest_history

        return digest_history(self.history)


class Source(Protocol):
    """A training framework's reader (see the module docstring for the contract)."""

    #: The registry name, shown in reports ("hf_trainer", "lightning", ...).
    name: str

    def find(self, folder: Folder) -> Found | None:
        """Return the run `folder` holds, or None when it is not a run of this framework.
        Decide from the listing alone: no reading here."""

    def find_file(self, entry: Entry) -> Found | None:
        """Return the run a file named alone on the command line is, or None."""

    def read(self, found: Found, storage: Storage, config: Config) -> list[RunRecord]:
        """Return the trainings of `found`, oldest first; raise StateFileError when none can
        be read. `config` names the logged keys (train_key) and folders (checkpoint_dir)."""


#: Sources in the order they are asked; the first that finds a run in a folder owns it.
SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    """Add `source` to SOURCES under its name and return it."""
    SOURCES[source.name] = source
    return source


def source_named(name: str) -> Source:
    """Return the registered source called `name`."""
    return SOURCES[name]


def read_found(found: Found, config: Config) -> list[RunRecord]:
    """Return the trainings of `found`, read by the source that found it through the storage
    of its location; raise StateFileError (naming the file and the fix) when none can be read."""
    if found.refused is not None:
        raise StateFileError(found.run_dir, found.refused)
    return SOURCES[found.source].read(found, for_path(found.run_dir), config)


# Each source registers itself when imported: the order here is the order a folder is offered
# to them (the Trainer's own checkpoint folders and trainer_state.json first).
from . import hf_trainer, tensorboard, llamafactory, lightning, mlflow  # noqa: E402, F401, I001
