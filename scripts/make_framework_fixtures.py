#!/usr/bin/env python3
"""Write one run of each supported training framework with its real writer, weights replaced.

    python3 scripts/make_framework_fixtures.py fixtures/frameworks

- hf_tensorboard/: a Trainer run logged by its TensorBoardCallback (report_to="tensorboard"),
  stopped at step 70 and resumed from checkpoint-50, so its history is split across two
  runs/<date>_<host>/ folders and steps 60 and 70 are logged twice. Its trainer_state.json
  files are removed afterwards: the event files are the only history, as when only the
  weights and the TensorBoard logs were kept. The first seed whose picks differ is kept.
- llamafactory/: the same kind of Trainer run with a callback that writes trainer_log.jsonl in
  LLaMA-Factory's record format, trainer_state.json files removed likewise.
- mlflow_sqlite/mlflow.db: a Trainer run logged by its MLflowCallback into MLflow's SQLite
  store (the tracking URI `sqlite:///mlflow.db`).
- lightning/lightning_logs/version_0/: a LightningModule fitted with CSVLogger (metrics.csv)
  and ModelCheckpoint (top 3 on val_loss, every epoch's save, save_last) into the same
  folder, which gives `-v1` names; lightning_tb/lightning_logs/version_0/ the same fit with
  TensorBoardLogger; mlflow_files/mlruns/ the same fit with MLFlowLogger's file store.

The newest trainer_state.json of each Trainer run is kept beside it as
trainer_state.reference.json (a name the auditor does not read) for the tests.

Every .ckpt and weight file is replaced by a 16-byte placeholder: the auditor takes steps
from the file names and never opens a checkpoint.

Needs torch==2.13.0, transformers==5.23.0, accelerate==1.15.0, lightning, tensorboardX,
mlflow-skinny (with sqlalchemy and alembic for the SQLite store).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_evidence_fixtures import settings  # noqa: E402
from make_real_overfit_fixture import make_data, model_and_arguments  # noqa: E402

import auditor  # noqa: E402

PLACEHOLDER = b"weights removed\n"
#: The file name LLaMA-Factory logs to.
TRAINER_LOG = "trainer_log.jsonl"


def llamafactory_log_callback() -> Any:
    """Return a Trainer callback that appends trainer_log.jsonl lines in the record format
    LLaMA-Factory's LogCallback writes: after every Trainer log, `current_steps` (the
    global step), `total_steps`, the newest entry's losses, learning rate (`lr`) and epoch,
    the percentage done and the elapsed and remaining time, keys without a value left out."""
    from transformers import TrainerCallback

    # LLaMA-Factory's own names for the Trainer's keys, in the order it writes them.
    renamed = {
        "loss": "loss",
        "eval_loss": "eval_loss",
        "predict_loss": "predict_loss",
        "reward": "reward",
        "rewards/accuracies": "accuracy",
        "learning_rate": "lr",
        "epoch": "epoch",
    }

    class LogLines(TrainerCallback):  # type: ignore[misc]
        started = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.time()

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not args.should_save:
                return
            step, total = state.global_step, state.max_steps
            elapsed = time.time() - self.started
            remaining = (total - step) * elapsed / step if step else 0.0
            newest = state.log_history[-1]
            record: dict[str, Any] = {"current_steps": step, "total_steps": total}
            record.update({ours: newest[key] for key, ours in renamed.items() if key in newest})
            record["percentage"] = round(step / total * 100, 2) if total else 100
            record["elapsed_time"] = str(timedelta(seconds=int(elapsed)))
            record["remaining_time"] = str(timedelta(seconds=int(remaining)))
            line = json.dumps({k: v for k, v in record.items() if v is not None})
            with open(Path(args.output_dir) / TRAINER_LOG, "a", encoding="utf-8") as log:
                log.write(line + "\n")

    return LogLines()


def trainer_run(
    out: Path, seed: int, report_to: list[str], callbacks: list[Any], stop_at: int | None = None
) -> None:
    """Train a tiny GPT-2 into `out` (relative output_dir, as the bundled examples); with
    `stop_at`, stop there and resume from the checkpoint two saves earlier."""
    import torch
    import transformers

    torch.set_num_threads(1)
    args = settings(seed=seed)
    train_set, eval_set = make_data(args)

    class StopAt(transformers.TrainerCallback):  # type: ignore[misc]
        def on_save(self, a: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if stop_at is not None and state.global_step >= stop_at:
                control.should_training_stop = True

    def make(extra: list[Any]) -> Any:
        model, training_args = model_and_arguments(
            args, out.name, save_total_limit=6, report_to=report_to
        )
        return transformers.Trainer(
            model=model,
            args=training_args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            callbacks=[*callbacks, *extra],
        )

    here = os.getcwd()
    os.chdir(out.parent)
    try:
        if stop_at is None:
            make([]).train()
        else:
            make([StopAt()]).train()
            time.sleep(1.1)  # the resumed run's runs/<date>_<host>/ folder name has seconds
            resume = f"{out.name}/checkpoint-{stop_at - 2 * args.every}"
            make([]).train(resume_from_checkpoint=resume)
    finally:
        os.chdir(here)


def replace_weights(root: Path) -> None:
    """Replace every weight, optimizer and checkpoint file below `root` by a placeholder."""
    for path in root.rglob("*"):
        if path.is_file() and (
            path.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
            or path.name in ("optimizer.pt", "scheduler.pt", "rng_state.pth")
        ):
            path.write_bytes(PLACEHOLDER)


def drop_trainer_states(run: Path) -> None:
    """Remove the run's trainer_state.json files, keeping the newest beside the run as
    trainer_state.reference.json: the tests compare the other writer's history with it."""
    states = sorted(
        run.rglob("trainer_state.json"), key=lambda p: json.loads(p.read_text())["global_step"]
    )
    shutil.copy(states[-1], run.parent / "trainer_state.reference.json")
    for path in states:
        path.unlink()


def lightning_fit(root: Path, logger_kind: str) -> None:
    """Fit a tiny LightningModule into `root` with one logger kind (csv, tensorboard,
    mlflow); ModelCheckpoint writes into the logger's version folder."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger

    torch.set_num_threads(1)
    L.seed_everything(0, workers=True)
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(8, 1, generator=generator)
    x_train = torch.randn(32, 8, generator=generator)
    y_train = x_train @ weights + torch.randn(32, 1, generator=generator)
    x_val = torch.randn(64, 8, generator=generator)
    y_val = x_val @ weights + torch.randn(64, 1, generator=generator)

    class Regression(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"hidden": 64, "lr": 0.03})
            self.net = torch.nn.Sequential(
                torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
            )

        def training_step(self, batch: Any, index: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, index: int) -> None:
            x, y = batch
            prediction = self.net(x)
            self.log("val_loss", torch.nn.functional.mse_loss(prediction, y))
            self.log("val_mae", (prediction - y).abs().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=0.03)

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_train, y_train), batch_size=4, shuffle=True
    )
    val_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_val, y_val), batch_size=64
    )
    logger: Any
    if logger_kind == "csv":
        logger = CSVLogger(str(root), name="lightning_logs")
    elif logger_kind == "tensorboard":
        logger = TensorBoardLogger(str(root), name="lightning_logs")
    else:
        # MLflow 3 refuses its file store unless told: the format is kept for existing runs.
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        logger = MLFlowLogger(
            experiment_name="lightning", tracking_uri=f"file:{root / 'mlruns'}", run_name="fit"
        )
    checkpoints = [
        ModelCheckpoint(monitor="val_loss", save_top_k=3, save_last=True),
        ModelCheckpoint(save_top_k=-1, every_n_epochs=2),
    ]
    trainer = L.Trainer(
        max_epochs=12,
        logger=logger,
        callbacks=checkpoints,
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        deterministic=True,
    )
    trainer.fit(Regression(), loader, val_loader)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to write the runs into")
    options = parser.parse_args(argv)
    root = options.root.resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)

    # The first seed whose picks differ, so the report shows the evidence for this source too.
    run = root / "hf_tensorboard" / "tb_output"
    for seed in range(3, 30):
        if run.parent.exists():
            shutil.rmtree(run.parent)
        run.parent.mkdir()
        trainer_run(run, seed, ["tensorboard"], [], stop_at=70)
        drop_trainer_states(run)
        (audited,) = auditor.audit(run).runs
        print(f"hf_tensorboard: seed {seed}: {audited.verdict}", flush=True)
        if audited.verdict != "agree":
            break
    replace_weights(run)

    (root / "llamafactory").mkdir()
    trainer_run(root / "llamafactory" / "lf_output", 4, [], [llamafactory_log_callback()])
    run = root / "llamafactory" / "lf_output"
    drop_trainer_states(run)
    replace_weights(run)

    sqlite_dir = root / "mlflow_sqlite"
    sqlite_dir.mkdir()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{sqlite_dir / 'mlflow.db'}"
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "trainer"
    scratch = root / "scratch"
    scratch.mkdir()
    trainer_run(scratch / "out", 5, ["mlflow"], [])
    drop_trainer_states(scratch / "out")
    shutil.move(scratch / "trainer_state.reference.json", sqlite_dir)
    shutil.rmtree(scratch)
    del os.environ["MLFLOW_TRACKING_URI"]

    lightning_fit(root / "lightning", "csv")
    lightning_fit(root / "lightning_tb", "tensorboard")
    lightning_fit(root / "mlflow_files", "mlflow")
    # MLFlowLogger saves its checkpoints beside mlruns/, in a folder of their own.
    replace_weights(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
