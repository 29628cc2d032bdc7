#!/usr/bin/env python3
"""Write two output folders a real Trainer reuses: a resumed training, and two trainings in one.

    python3 scripts/make_reused_dir_fixtures.py resumed fixtures/real_resumed_twice_logged
    python3 scripts/make_reused_dir_fixtures.py two-trainings fixtures/real_two_trainings

`resumed`: a training crashes at step 35, after saving checkpoint-30, and is resumed from that
checkpoint with `eval_on_start=True` and a larger eval batch: the resumed Trainer evaluates step
30 again, so step 30 is logged twice, with an eval loss a few ulps away from the first (the batches
sum in another order). The later entry is the one that counts.

`two-trainings`: a first training (eval and save every 10 steps, 50 steps, a learning rate high
enough that its eval loss turns up at step 50) and then a second one
with another seed and learning rate (every 20 steps, 80 steps) into the same output_dir. The second
overwrites checkpoint-20 and checkpoint-40 and the root trainer_state.json; checkpoint-10, -30 and
-50 stay from the first.

Both use the tiny GPT-2 and data of make_real_overfit_fixture.py, strip the weights the same way,
and end as run_clm.py does (save_model, save_state).
Needs torch and transformers (pip install 'checkpoint-auditor[transformers]' torch accelerate).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_real_overfit_fixture import make_data, write_stripped


class Crash(RuntimeError):
    """Raised by a callback to stop a training the way a killed job stops."""


def data_args(seed: int) -> argparse.Namespace:
    """Return the data settings of make_real_overfit_fixture.py with `seed`."""
    return argparse.Namespace(seed=seed, train_size=16, eval_size=64, vocab=32, length=32)


def trainer(name: str, seed: int, callbacks: list[Any] | None = None, **settings: Any) -> Any:
    """Return a Trainer of the tiny GPT-2 writing into ./name."""
    import torch
    import transformers

    torch.set_num_threads(1)  # one thread: the same numbers on every machine we tried
    data = data_args(seed)
    train_set, eval_set = make_data(data)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=data.vocab, n_positions=data.length, n_embd=16, n_layer=1, n_head=2
        )
    )
    defaults: dict[str, Any] = {
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 32,
        "eval_strategy": "steps",
        "logging_steps": 5,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "use_cpu": True,
        "report_to": [],
        "disable_tqdm": True,
        "seed": seed,
    }
    args = transformers.TrainingArguments(output_dir=name, **{**defaults, **settings})
    return transformers.Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        callbacks=callbacks or [],
    )


def finish(run: Any, result: Any) -> None:
    """End as run_clm.py does: the model, the train metrics and the root trainer_state.json."""
    run.save_model()
    run.save_metrics("train", result.metrics)
    run.save_state()


def resumed(name: str) -> None:
    """Crash at step 35, then resume from checkpoint-30 evaluating on start."""
    import transformers

    class CrashAt(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 35:
                raise Crash("killed at step 35")

    settings = {"max_steps": 60, "eval_steps": 10, "save_steps": 10, "learning_rate": 1e-2}
    with contextlib.suppress(Crash):
        trainer(name, 0, [CrashAt()], **settings).train()
    again = trainer(name, 0, eval_on_start=True, per_device_eval_batch_size=24, **settings)
    finish(again, again.train(resume_from_checkpoint=os.path.join(name, "checkpoint-30")))


def two_trainings(name: str) -> None:
    """Train twice into one output_dir, the second with other settings."""
    first = trainer(name, 0, max_steps=50, eval_steps=10, save_steps=10, learning_rate=5e-2)
    finish(first, first.train())
    second = trainer(name, 1, max_steps=80, eval_steps=20, save_steps=20, learning_rate=3e-3)
    finish(second, second.train())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["resumed", "two-trainings"])
    parser.add_argument("output_dir", type=Path, help="where the run is written (must not exist)")
    parser.add_argument("--force", action="store_true", help="replace output_dir if it exists")
    args = parser.parse_args(argv)
    write = resumed if args.kind == "resumed" else two_trainings
    return 0 if write_stripped(args.output_dir, args.force, write) is not None else 2


if __name__ == "__main__":
    sys.exit(main())
