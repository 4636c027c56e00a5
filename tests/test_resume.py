"""Exact resume: stop, resume, and end bit-identical; atomic checkpoints; SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gpt2kit.training import Trainer, TrainingArguments, last_checkpoint
from gpt2kit.training import state as state_mod
from gpt2kit.training.state import checkpoint_dirs

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import lm_data, tiny_lm  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# 20 examples, batch 2, accumulation 2 -> 5 micro-batches = 3 steps per epoch (the last
# step takes the leftover micro-batch); 7 steps cross two epoch boundaries.
RUN = dict(
    max_steps=7, per_device_train_batch_size=2, gradient_accumulation_steps=2, learning_rate=3e-3,
    warmup_steps=2, weight_decay=0.1, disable_tqdm=True, logging_steps=1, save_at_end=False,
)  # fmt: skip


class StopAt:
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.global_step == self.step:
            trainer.request_stop("test")


def run(out: Path, resume=None, callbacks=(), eval_data=None, **kw) -> torch.nn.Module:
    model = tiny_lm(dropout=0.1)  # dropout on: the RNG state must be restored too
    args = TrainingArguments(str(out), **{**RUN, **kw})
    Trainer(model, args, lm_data(20), eval_dataset=eval_data, callbacks=list(callbacks)).train(
        resume_from_checkpoint=resume
    )
    return model


def assert_identical(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), f"{name} differs after resume"


@pytest.mark.parametrize("stop", [1, 3, 4])  # mid-epoch, epoch boundary, just after one
def test_resume_is_bit_identical(tmp_path, stop):
    reference = run(tmp_path / "ref")
    run(tmp_path / "run", callbacks=[StopAt(stop)])
    assert last_checkpoint(tmp_path / "run").name == f"checkpoint-{stop}"
    resumed = run(tmp_path / "run", resume=True)
    assert_identical(reference, resumed)
    # the log of the resumed run continues the interrupted one
    import json

    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    ref_log = [json.loads(x) for x in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 8))
    assert [r["loss"] for r in log] == [r["loss"] for r in ref_log]


def test_resume_from_explicit_path_with_eval(tmp_path):
    kw = dict(eval_steps=2, save_steps=2)
    reference = run(tmp_path / "ref", eval_data=lm_data(4, seed=1), **kw)
    run(tmp_path / "run", eval_data=lm_data(4, seed=1), callbacks=[StopAt(5)], **kw)
    resumed = run(
        tmp_path / "run",
        resume=tmp_path / "run" / "checkpoint-4",
        eval_data=lm_data(4, seed=1),
        **kw,
    )
    assert_identical(reference, resumed)


def test_checkpoint_state_files_load_weights_only(tmp_path):
    run(tmp_path, callbacks=[StopAt(2)])
    ckpt = last_checkpoint(tmp_path)
    names = {p.name for p in ckpt.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pt",
        "trainer_state.json",
    } <= names
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pt"):
        torch.load(ckpt / name, weights_only=True)  # plain tensors and numbers only


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # second checkpoint, after its weights and optimizer are written
            raise OSError("disk full (simulated)")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(state_mod.torch, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        run(tmp_path / "run", save_steps=2)
    monkeypatch.setattr(state_mod.torch, "save", real_save)
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["checkpoint-2"]
    assert not [
        p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")
    ]  # no scratch left
    # the surviving checkpoint resumes to the same result as an uninterrupted run
    reference = run(tmp_path / "ref", save_steps=2)
    resumed = run(tmp_path / "run", resume=True, save_steps=2)
    assert_identical(reference, resumed)


SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from test_resume import run

    class Slow:
        def on_step_end(self, trainer):
            if trainer.state.global_step == 2:
                open({marker!r}, "w").close()  # tell the parent we are mid-run
            time.sleep(0.3)

    run({out!r}, callbacks=[Slow()], max_steps=40)
    open({done!r}, "w").close()
    """
)


def test_sigterm_writes_checkpoint_and_resume_matches(tmp_path):
    out, marker, done = tmp_path / "run", tmp_path / "started", tmp_path / "done"
    code = SCRIPT.format(
        tests=str(Path(__file__).parent), out=str(out), marker=str(marker), done=str(done)
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, "training process died before step 2"
        assert time.time() < deadline, "training did not reach step 2 in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0  # clean exit, not killed by the signal
    assert done.exists()
    ckpt = last_checkpoint(out)
    stopped = int(ckpt.name.split("-")[1])
    assert 2 <= stopped < 40
    reference = run(tmp_path / "ref", max_steps=40)
    resumed = run(out, resume=True, max_steps=40)
    assert_identical(reference, resumed)


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_signal_handlers_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    run(tmp_path, max_steps=1)
    assert signal.getsignal(signal.SIGTERM) is before
