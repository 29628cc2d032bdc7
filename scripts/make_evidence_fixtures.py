#!/usr/bin/env python3
"""Write the fixtures where the evidence behind the overfit flag matters, with a real Trainer.

Three cases, each a tiny GPT-2 trained on CPU on a random Markov chain (as
make_real_overfit_fixture.py does), then stripped of its weights:

- metric_contradicts: logs eval_accuracy (next-token accuracy); the eval-only pick overfits
  more than the scorer's pick, but the accuracy rates it better beyond its own noise.
- noisy_dip: a small eval set makes a bumpy eval curve; the eval-only pick is a dip whose lower
  eval loss is within the curve's noise, so the run is flagged.
- mixed_sweep/{multi_eval,plain}: a run evaluated on two eval sets (eval_in_domain_loss and
  eval_ood_loss, the Trainer selecting on the first) beside a plain run, in one sweep folder.

A case that needs an outcome trains seeds in turn until the audit gives it, and says which
seed it kept: the Trainer writes every file, the script only chooses the run.

    python3 scripts/make_evidence_fixtures.py fixtures/evidence

Needs torch and transformers (pip install 'checkpoint-auditor[transformers]' torch accelerate).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_real_overfit_fixture import (  # noqa: E402
    make_data,
    model_and_arguments,
    strip_weights,
)

import auditor  # noqa: E402


def settings(**changes: Any) -> argparse.Namespace:
    """Return the data and training settings of make_real_overfit_fixture.py, changed."""
    base = {
        "seed": 0,
        "lr": 1e-2,
        "steps": 100,
        "every": 10,
        "logging_steps": 5,
        "train_size": 16,
        "eval_size": 64,
        "vocab": 32,
        "length": 32,
    }
    return argparse.Namespace(**{**base, **changes})


def token_accuracy(prediction: Any) -> dict[str, float]:
    """Return next-token accuracy from argmax ids (see `argmax_ids`)."""
    ids, labels = prediction.predictions, prediction.label_ids
    right = ids[:, :-1] == labels[:, 1:]
    return {"accuracy": float(right.mean())}


def argmax_ids(logits: Any, labels: Any) -> Any:
    # Keeping ids instead of logits: the Trainer gathers them for compute_metrics.
    return logits.argmax(-1)


def train(
    args: argparse.Namespace,
    out: Path,
    accuracy: bool = False,
    two_eval_sets: bool = False,
) -> None:
    """Train into `out` (written with a relative output_dir, as in the bundled examples)."""
    import torch
    import transformers

    torch.set_num_threads(1)  # one thread: the same numbers on every machine we tried
    train_set, eval_set = make_data(args)
    eval_data: Any = eval_set
    metric = "eval_loss"
    if two_eval_sets:
        _, other = make_data(settings(**{**vars(args), "seed": args.seed + 1000}))
        eval_data = {"in_domain": eval_set, "ood": other}
        metric = "eval_in_domain_loss"
    model, training_args = model_and_arguments(args, out.name, metric_for_best_model=metric)
    trainer = transformers.Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_data,
        compute_metrics=token_accuracy if accuracy else None,
        preprocess_logits_for_metrics=argmax_ids if accuracy else None,
    )
    here = os.getcwd()
    os.chdir(out.parent)
    try:
        result = trainer.train()
        trainer.save_model()
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
    finally:
        os.chdir(here)
    strip_weights(out)


def outcome(run: Path) -> tuple[str, auditor.RunResult]:
    """Return the run's evidence outcome ("agree" when its picks agree) and its audit."""
    (audited,) = auditor.audit(run).runs
    return (audited.evidence.outcome if audited.evidence else audited.verdict), audited


def search(out: Path, wanted: str, seeds: range, accuracy: bool, **changes: Any) -> int:
    """Train seed after seed into `out` until the audit's outcome is `wanted`; return the seed."""
    for seed in seeds:
        if out.exists():
            shutil.rmtree(out)
        train(settings(seed=seed, **changes), out, accuracy=accuracy)
        found, audited = outcome(out)
        print(f"{out.name}: seed {seed}: {found}", flush=True)
        if found == wanted:
            print(audited.evidence)
            return seed
    raise SystemExit(f"{out.name}: no seed in {seeds} gives {wanted}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to write the cases into")
    parser.add_argument(
        "--only", choices=("metric_contradicts", "noisy_dip", "mixed_sweep"), action="append"
    )
    options = parser.parse_args(argv)
    root = options.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    cases = options.only or ["metric_contradicts", "noisy_dip", "mixed_sweep"]
    if "metric_contradicts" in cases:
        search(root / "metric_contradicts", "contradicted_by_metric", range(40), accuracy=True)
    if "noisy_dip" in cases:
        search(root / "noisy_dip", "flagged", range(40), accuracy=False, eval_size=4, lr=2e-2)
    if "mixed_sweep" in cases:
        sweep = root / "mixed_sweep"
        for name in ("multi_eval", "plain"):
            if (sweep / name).exists():
                shutil.rmtree(sweep / name)
        sweep.mkdir(parents=True, exist_ok=True)
        train(settings(seed=1), sweep / "multi_eval", two_eval_sets=True)
        train(settings(seed=2), sweep / "plain")
        for run in auditor.audit(sweep).runs:
            print(run.run_dir, run.eval_key, run.verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
