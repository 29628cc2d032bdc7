"""ScoreBestCallback on real tiny Trainer runs on CPU: recording, steering, resuming, agreement."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SEED, VOCAB, LENGTH, STEPS, EVERY = 1, 32, 32, 60, 10
# With these settings the tiny model memorises its 8 training sequences: eval loss is lowest
# at step 20, but step 10 has the better score (a much smaller train/eval gap).
EVAL_LOSS_BEST, SCORE_BEST = 20, 10


@pytest.fixture(scope="module", autouse=True)
def _no_tqdm_monitor_thread() -> Iterator[None]:
    """tqdm (the Trainer's progress bars) leaves a monitor thread running, and the auditor
    forks no worker beside another thread: later tests would lose their worker processes."""
    try:
        import tqdm
    except ImportError:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tqdm.tqdm, "monitor_interval", 0)
        yield


def test_import_without_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, "auditor.integrations.transformers", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'checkpoint-auditor\[transformers\]'"):
        importlib.import_module("auditor.integrations.transformers")


def test_core_and_cli_never_import_transformers() -> None:
    code = (
        "import importlib, pkgutil, sys, auditor\n"
        "for m in pkgutil.walk_packages(auditor.__path__, 'auditor.'):\n"
        "    if not m.name.startswith('auditor.integrations') and m.name != 'auditor.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('transformers', 'torch')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    assert out.stdout.strip() == "[]"


# Everything below trains. .ci/run installs torch and transformers, so under CI a missing one
# is a failure; the skip only spares developer machines without the extra.
if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
    import safetensors.torch as safetensors_torch
    import torch
    import transformers
else:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    safetensors_torch = pytest.importorskip("safetensors.torch")

from auditor.config import Config, Weights, to_yaml  # noqa: E402
from auditor.integrations.transformers import SCORES_FILE, ScoreBestCallback  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Train on one thread: a model this small gains nothing from more, and loses under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Sequences(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, ids: Any) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _data() -> tuple[_Sequences, _Sequences]:
    """Return (train, eval) sets sampled from one random Markov chain over token ids."""
    generator = torch.Generator().manual_seed(SEED)
    transitions = torch.softmax(torch.randn(VOCAB, VOCAB, generator=generator) * 2.0, -1)

    def sample(n: int) -> Any:
        ids = torch.empty(n, LENGTH, dtype=torch.long)
        token = torch.randint(0, VOCAB, (n,), generator=generator)
        for i in range(LENGTH):
            ids[:, i] = token
            token = torch.multinomial(transitions[token], 1, generator=generator).squeeze(1)
        return ids

    return _Sequences(sample(8)), _Sequences(sample(64))


class _StopAt(transformers.TrainerCallback):  # type: ignore[misc]
    """Stop training after `step` (it is evaluated and saved first): a run to resume."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            control.should_training_stop = True


def _train(
    out: Path,
    callbacks: list[Any],
    save_total_limit: int | None = None,
    load_best_model_at_end: bool = False,
    resume: bool = False,
) -> Any:
    """Train a tiny random-weight GPT-2 on CPU into `out`; return the Trainer."""
    train, evals = _data()
    torch.manual_seed(SEED)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=LENGTH, n_embd=16, n_layer=1, n_head=2
    )
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=32,
        learning_rate=1e-2,
        eval_strategy="steps",
        eval_steps=EVERY,
        save_steps=EVERY,
        logging_steps=5,
        save_total_limit=save_total_limit,
        load_best_model_at_end=load_best_model_at_end,
        metric_for_best_model="eval_loss" if load_best_model_at_end else None,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        seed=SEED,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=evals, callbacks=callbacks
    )
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.save_state()
    return trainer


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _show(run: Path, *options: str) -> dict[str, Any]:
    """Return the offline audit of `run`: `ckpt-audit show RUN --format json`."""
    out = subprocess.run(
        [sys.executable, "-m", "auditor", "show", str(run), "--format", "json", *options],
        capture_output=True,
        text=True,
        cwd=run.parent,  # no .ckpt-audit.yaml from the working directory
        env=_env(),
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report["runs"][0]


def _scores(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / SCORES_FILE).read_text())
    return data


def _checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob("checkpoint-*"))


def _losses(log_history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Return what a run learnt, without the timings that differ between two runs."""
    return [(e["step"], e.get("loss"), e.get("eval_loss")) for e in log_history]


def _same_weights(trainer: Any, checkpoint: Path) -> bool:
    saved = safetensors_torch.load_file(str(checkpoint / "model.safetensors"))
    live = trainer.model.state_dict()
    return bool(saved) and all(torch.equal(live[k], v) for k, v in saved.items())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three runs with save_total_limit=2 and load_best_model_at_end: none, recording, steering."""
    root = tmp_path_factory.mktemp("runs")
    plain = _train(root / "plain", [], save_total_limit=2, load_best_model_at_end=True)
    recorder = ScoreBestCallback()
    recorded = _train(
        root / "recorded", [recorder], save_total_limit=2, load_best_model_at_end=True
    )
    steerer = ScoreBestCallback(load_score_best_at_end=True)
    steered = _train(root / "steered", [steerer], save_total_limit=2, load_best_model_at_end=True)
    return {
        "plain": (root / "plain", plain, None),
        "recorded": (root / "recorded", recorded, recorder),
        "steered": (root / "steered", steered, steerer),
    }


def test_recording_leaves_the_trainer_exactly_as_before(runs: dict[str, Any]) -> None:
    plain_dir, plain, _ = runs["plain"]
    recorded_dir, recorded, _ = runs["recorded"]
    assert (
        _checkpoints(recorded_dir)
        == _checkpoints(plain_dir)
        == [
            f"checkpoint-{EVAL_LOSS_BEST}",
            f"checkpoint-{STEPS}",
        ]
    )
    for field in ("best_metric", "best_global_step"):  # best_global_step: transformers >= 4.50
        assert getattr(recorded.state, field, None) == getattr(plain.state, field, None), field
    assert _losses(recorded.state.log_history) == _losses(plain.state.log_history)
    assert Path(recorded.state.best_model_checkpoint).name == f"checkpoint-{EVAL_LOSS_BEST}"
    assert _same_weights(recorded, plain_dir / f"checkpoint-{EVAL_LOSS_BEST}")


def test_recorded_file_holds_config_steps_components_and_pick(runs: dict[str, Any]) -> None:
    run, _, callback = runs["recorded"]
    data = _scores(run)
    assert data["config"] == Config().to_dict()
    assert data["load_score_best_at_end"] is False
    assert [s["step"] for s in data["steps"]] == list(range(EVERY, STEPS + 1, EVERY))
    for row in data["steps"]:
        parts = row["components"]
        assert set(parts) == {"eval", "gap", "perplexity", "improvement"}
        assert row["score"] == pytest.approx(sum(parts.values()), abs=1e-12)
        assert row["on_disk"] == (row["checkpoint"] is not None)
    # Rotation kept the Trainer's eval-loss best and the newest: the pick is among those.
    assert data["scorer_pick"] == {"step": EVAL_LOSS_BEST, "checkpoint": "checkpoint-20"}
    assert callback.scorer_pick.step == EVAL_LOSS_BEST


def test_live_pick_agrees_with_the_offline_audit(runs: dict[str, Any]) -> None:
    for name in ("recorded", "steered"):
        run, _, _ = runs[name]
        offline = _show(run)
        live = _scores(run)
        assert offline["scorer_pick"] == live["scorer_pick"], name
        assert offline["eval_only_pick"] == live["eval_only_pick"], name
        by_step = {c["step"]: c for c in offline["checkpoints"]}
        for row in live["steps"]:
            assert row["score"] == by_step[row["step"]]["score"], (name, row["step"])
            assert row["components"] == by_step[row["step"]]["components"], (name, row["step"])


def test_score_best_is_kept_through_rotation_and_loaded_at_end(runs: dict[str, Any]) -> None:
    run, trainer, callback = runs["steered"]
    data = _scores(run)
    evals = {s["step"]: s["eval_loss"] for s in data["steps"]}
    assert min(evals, key=lambda s: evals[s]) == EVAL_LOSS_BEST  # the eval-loss pick differs
    assert data["scorer_pick"] == {"step": SCORE_BEST, "checkpoint": f"checkpoint-{SCORE_BEST}"}
    assert data["load_score_best_at_end"] is True
    assert callback.scorer_pick.step == SCORE_BEST
    assert _checkpoints(run) == [f"checkpoint-{SCORE_BEST}", f"checkpoint-{STEPS}"]
    assert Path(trainer.state.best_model_checkpoint).name == f"checkpoint-{SCORE_BEST}"
    assert getattr(trainer.state, "best_global_step", SCORE_BEST) == SCORE_BEST
    assert trainer.state.best_metric == evals[SCORE_BEST]
    assert _same_weights(trainer, run / f"checkpoint-{SCORE_BEST}")
    assert not _same_weights(trainer, run / f"checkpoint-{STEPS}")
    # Every saved trainer_state.json names the pick with its own metric, as the Trainer would.
    for state_file in [run / "trainer_state.json", run / f"checkpoint-{STEPS}/trainer_state.json"]:
        state = json.loads(state_file.read_text())
        assert Path(state["best_model_checkpoint"]).name == f"checkpoint-{SCORE_BEST}"
        assert state["best_metric"] == evals[SCORE_BEST]
    assert _show(run)["trainer_best"] == data["scorer_pick"]


def test_every_saved_state_names_the_score_best_so_far(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(run, [ScoreBestCallback(load_score_best_at_end=True)], load_best_model_at_end=True)
    steps = _scores(run)["steps"]
    for row in steps:
        so_far = [r for r in steps if r["step"] <= row["step"]]
        pick = min(so_far, key=lambda r: (r["score"], r["step"]))
        state = json.loads((run / f"checkpoint-{row['step']}" / "trainer_state.json").read_text())
        assert Path(state["best_model_checkpoint"]).name == f"checkpoint-{pick['step']}"
        assert state.get("best_global_step", pick["step"]) == pick["step"]
        # At step 20 the Trainer alone would have taken the lower eval loss as its best.
        assert state["best_metric"] == pick["eval_loss"], row["step"]


def test_components_are_logged_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="auditor.integrations.transformers")
    _train(tmp_path / "run", [ScoreBestCallback(), _StopAt(EVERY * 2)])
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("auditor.")]
    assert len([m for m in lines if "score" in m and "improvement" in m]) == 2
    assert lines[0].startswith(f"step {EVERY}: score ")


def test_resumed_run_continues_the_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = Config(weights=Weights(eval=0.4, gap=0.5, perplexity=0.1))
    _train(run, [ScoreBestCallback(config), _StopAt(30)])
    first = _scores(run)
    assert [s["step"] for s in first["steps"]] == [10, 20, 30]
    assert first["resumed_at"] == []
    callback = ScoreBestCallback()  # no config: the resumed run keeps the stored one
    _train(run, [callback], resume=True)
    data = _scores(run)
    assert callback.config == config
    assert data["config"] == config.to_dict()
    assert data["resumed_at"] == [30]
    assert [s["step"] for s in data["steps"]] == list(range(EVERY, STEPS + 1, EVERY))
    assert data["steps"][:3] == first["steps"]
    config_file = tmp_path / "scores.yaml"
    config_file.write_text(to_yaml(config))
    assert _show(run, "--config", str(config_file))["scorer_pick"] == data["scorer_pick"]
