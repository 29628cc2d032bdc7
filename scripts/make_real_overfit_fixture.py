#!/usr/bin/env python3
"""Train a tiny GPT-2 with a real Trainer on CPU until it memorises, then strip the weights.

The model is built from a config with random weights (no download). Its data are token ids
sampled from a random Markov chain: eval loss first falls as the model learns the chain, then
rises as it memorises its few training sequences. The output dir ends the way run_clm.py
ends (save_model, train metrics, save_state, then a final evaluate), after which the weights,
optimizer, scheduler and RNG states and training_args.bin are deleted and each checkpoint gets
an empty WEIGHTS_STRIPPED. Finally it prints the SPEC's picks and the audit's verdict.

    python3 scripts/make_real_overfit_fixture.py fixtures/real_overfit_flagged

Needs torch and transformers (pip install 'checkpoint-auditor[transformers]' torch accelerate).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from auditor.api import audit  # noqa: E402
from auditor.config import Config  # noqa: E402
from auditor.pair import pair_history  # noqa: E402
from auditor.scoring import overfit_ratio, score  # noqa: E402

STRIPPED = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "scaler.pt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="where the run is written (must not exist)")
    parser.add_argument("--force", action="store_true", help="replace output_dir if it exists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="eval and save every N steps")
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=16, help="training sequences")
    parser.add_argument("--eval-size", type=int, default=64, help="evaluation sequences")
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--length", type=int, default=32, help="tokens per sequence")
    return parser.parse_args(argv)


def make_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """Return (train, eval) datasets of token ids drawn from one random Markov chain."""
    import torch

    generator = torch.Generator().manual_seed(args.seed)
    transitions = torch.softmax(torch.randn(args.vocab, args.vocab, generator=generator) * 2, -1)

    def sample(n: int) -> Any:
        ids = torch.empty(n, args.length, dtype=torch.long)
        token = torch.randint(0, args.vocab, (n,), generator=generator)
        for i in range(args.length):
            ids[:, i] = token
            token = torch.multinomial(transitions[token], 1, generator=generator).squeeze(1)
        return ids

    class Sequences(torch.utils.data.Dataset):  # type: ignore[misc]
        def __init__(self, ids: Any) -> None:
            self.ids = ids

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    return Sequences(sample(args.train_size)), Sequences(sample(args.eval_size))


def model_and_arguments(
    args: argparse.Namespace, output_dir: str, **changes: Any
) -> tuple[Any, Any]:
    """Return the tiny GPT-2 (seeded) and the TrainingArguments every fixture run trains with:
    evaluated and saved every `args.every` steps, the best kept on eval_loss, on one CPU;
    `changes` override arguments (metric_for_best_model, save_total_limit, report_to)."""
    import torch
    import transformers

    torch.manual_seed(args.seed)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=args.vocab, n_positions=args.length, n_embd=16, n_layer=1, n_head=2
        )
    )
    arguments = {
        "output_dir": output_dir,
        "max_steps": args.steps,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 32,
        "learning_rate": args.lr,
        "eval_strategy": "steps",
        "eval_steps": args.every,
        "save_steps": args.every,
        "logging_steps": args.logging_steps,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "use_cpu": True,
        "report_to": [],
        "disable_tqdm": True,
        "seed": args.seed,
    }
    return model, transformers.TrainingArguments(**{**arguments, **changes})


def train(args: argparse.Namespace, name: str) -> None:
    """Train into ./name (a relative output_dir, as in the bundled examples)."""
    import torch
    import transformers

    torch.set_num_threads(1)  # one thread: the same numbers on every machine we tried
    train_set, eval_set = make_data(args)
    model, training_args = model_and_arguments(args, name)
    trainer = transformers.Trainer(
        model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set
    )
    result = trainer.train()
    trainer.save_model()
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    # run_clm.py evaluates after save_state: this evaluation is in no trainer_state.json.
    trainer.save_metrics("eval", trainer.evaluate())


def strip_weights(run: Path) -> None:
    """Delete weights and pickled states; mark each checkpoint with an empty WEIGHTS_STRIPPED."""
    for folder in [run, *sorted(run.glob("checkpoint-*"))]:
        for path in folder.iterdir():
            if path.suffix == ".safetensors" or path.name in STRIPPED:
                path.unlink()
        if folder != run:
            (folder / "WEIGHTS_STRIPPED").touch()


def report(run: Path, config: Config) -> bool:
    """Print each checkpoint's score and the SPEC section 4 picks; return True when flagged."""
    state = json.loads((run / "trainer_state.json").read_text())
    on_disk = {int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")}
    rows = []
    for e in pair_history(state["log_history"]).evaluations:
        total = score(e.eval_loss, e.train_loss, e.epochs_without_improvement, config).total
        overfit = overfit_ratio(e.eval_loss, e.train_loss)
        rows.append((e.step, e.eval_loss, e.train_loss, total, overfit))
        train_loss = "-" if e.train_loss is None else f"{e.train_loss:.4f}"
        print(
            f"step {e.step:4d}  eval {e.eval_loss:.4f}  train {train_loss}"
            f"  score {total:.4f}  overfit {overfit:.3f}"
        )
    candidates = [r for r in rows if r[0] in on_disk]
    eval_only = min(candidates, key=lambda r: (r[1], r[0]))
    scorer = min(candidates, key=lambda r: (r[3], r[0]))
    delta = eval_only[4] - scorer[4]
    # The flag weighs the eval curve's noise and any task metric too (SPEC v2): ask the audit.
    (audited,) = audit(run, config=config).runs
    print(
        f"eval-only pick {eval_only[0]}, scorer pick {scorer[0]}, overfit delta {delta:.3f}: "
        f"{audited.verdict} ({audited.evidence.outcome if audited.evidence else 'picks agree'})"
    )
    return audited.flagged


def write_stripped(output_dir: Path, force: bool, write: Callable[[str], None]) -> Path | None:
    """Run `write(name)` from the parent of `output_dir` (a relative output_dir, as in the
    bundled examples), strip the weights and return the folder; None when it exists already
    and `force` is not given."""
    out = output_dir.resolve()
    if out.exists():
        if not force:
            print(f"{out} exists: pass --force to replace it", file=sys.stderr)
            return None
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(out.parent)
    try:
        write(out.name)
    finally:
        os.chdir(here)
    strip_weights(out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = write_stripped(args.output_dir, args.force, lambda name: train(args, name))
    if out is None:
        return 2
    report(out, Config())
    return 0


if __name__ == "__main__":
    sys.exit(main())
