"""Reliability: the Trainer's checkpoints and options (issue 18, "Trainer"): a damaged newest
checkpoint names its file and `--resume` falls back to the previous good one, a full disk
names the folder, out-of-range options fail by name before any data is read. One test per
case; docs/reliability.md has a row for each."""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path

import pytest
import torch

from gpt2kit.training import Trainer, TrainingArguments
from gpt2kit.training import state as state_mod
from gpt2kit.training.state import DamagedCheckpointError, checkpoint_dirs

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import RUN, StopAt, assert_identical, run  # noqa: E402
from test_trainer import lm_data, tiny_lm  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    """A 7-step run stopped after step 4, with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("run") / "out"
    run(out, save_steps=2, callbacks=[StopAt(4)])
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-2", "checkpoint-4"]
    return out


def copy_of(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "name",
    ["optimizer.pt", "rng_state.pt", "scheduler.pt", "trainer_state.json", "model.safetensors"],
)
def test_corrupt_latest_checkpoint_names_the_file(two_checkpoints, tmp_path, name):
    out = copy_of(two_checkpoints, tmp_path / "out")
    cut_short(out / "checkpoint-4" / name)
    model = tiny_lm(dropout=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, TrainingArguments(str(out), **{**RUN, "save_steps": 2}), lm_data(20))
    with pytest.raises(DamagedCheckpointError, match=rf"checkpoint-4/{name}"):
        trainer.train(resume_from_checkpoint=out / "checkpoint-4")
    for key, value in model.state_dict().items():  # nothing half-restored
        assert torch.equal(value.cpu(), before[key]), key


def test_resume_falls_back_to_previous_good_checkpoint(two_checkpoints, tmp_path, caplog):
    out = copy_of(two_checkpoints, tmp_path / "out")
    cut_short(out / "checkpoint-4" / "optimizer.pt")
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        resumed = run(out, resume=True, save_steps=2)
    assert "checkpoint-4 is damaged" in caplog.text and "optimizer.pt" in caplog.text
    assert "resuming from checkpoint-2 instead of the newest checkpoint checkpoint-4" in caplog.text
    reference = run(tmp_path / "ref", save_steps=2)
    assert_identical(reference, resumed)  # from step 2, bit-exact to an uninterrupted run


def test_resume_with_only_damaged_checkpoints_is_an_error(two_checkpoints, tmp_path):
    out = copy_of(two_checkpoints, tmp_path / "out")
    cut_short(out / "checkpoint-4" / "rng_state.pt")
    cut_short(out / "checkpoint-2" / "trainer_state.json")
    with pytest.raises(DamagedCheckpointError, match=r"checkpoint-2/trainer_state\.json"):
        run(out, resume=True, save_steps=2)


def test_full_disk_during_checkpoint_says_no_space_naming_folder(tmp_path, monkeypatch):
    real = torch.save
    calls = {"n": 0}

    def full(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the second checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(state_mod.torch, "save", full)
    out = tmp_path / "run"
    with pytest.raises(OSError, match=rf"no space left on device while saving {out}/checkpoint-4"):
        run(out, save_steps=2)
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-2"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch left


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("max_steps", -5, "max_steps must be a positive number of optimizer steps, or -1"),
        ("max_steps", 0, "max_steps must be a positive number"),
        ("max_steps", 2.5, "max_steps must be a positive number"),
        ("num_train_epochs", -1.0, r"num_train_epochs must be in \[0, inf\]"),
        ("num_train_epochs", float("nan"), "num_train_epochs must be a finite number"),
        ("learning_rate", -1e-4, r"learning_rate must be in \[0, inf\]"),
        ("learning_rate", float("inf"), "learning_rate must be a finite number"),
        ("weight_decay", -0.1, "weight_decay must be in"),
        ("adam_beta1", 1.0, r"adam_beta1 must be in \[0, 1\)"),
        ("adam_beta2", -0.5, "adam_beta2 must be in"),
        ("adam_epsilon", -1e-8, "adam_epsilon must be in"),
        ("max_grad_norm", -1.0, "max_grad_norm must be in"),
        ("warmup_steps", -3, "warmup_steps must be in"),
        ("warmup_ratio", 1.5, r"warmup_ratio must be in \[0, 1\]"),
        ("seed", -1, "seed must be in"),
        ("seed", 2**64, "seed must be in"),
        ("data_seed", "x", "data_seed must be an integer"),
        ("per_device_train_batch_size", 0, "per_device_train_batch_size must be in"),
        ("per_device_eval_batch_size", 0, "per_device_eval_batch_size must be in"),
        ("gradient_accumulation_steps", 1.5, "gradient_accumulation_steps must be an integer"),
        ("save_steps", 0, r"save_steps must be in \[1, inf\] \(or None: off\)"),
        ("eval_steps", -2, "eval_steps must be in"),
        ("logging_steps", 0, "logging_steps must be in"),
        ("max_time_minutes", -1, "max_time_minutes must be in"),
        ("dataloader_num_workers", -1, "dataloader_num_workers must be in"),
        ("early_stopping_threshold", -0.1, "early_stopping_threshold must be in"),
    ],
)
def test_out_of_range_training_arguments_are_errors(tmp_path, field, value, words):
    with pytest.raises(ValueError, match=words):
        TrainingArguments(str(tmp_path), **{field: value})


@pytest.mark.parametrize(
    "flag,value,words",
    [
        ("--max-steps", "-5", "--max-steps must be a positive number of optimizer steps"),
        ("--batch-size", "0", "--batch-size must be in"),
        ("--warmup-ratio", "2", "--warmup-ratio must be in"),
        ("--lr", "-1", "--lr must be in"),
    ],
)
def test_cli_options_checked_before_data_loads(tmp_path, capsys, flag, value, words):
    from gpt2kit.cli import main

    code = main(
        [
            "train",
            "--task",
            "causal-lm",
            "--model",
            str(tmp_path / "no-such-model"),
            "--train-file",
            str(tmp_path / "no-such-file.txt"),
            "--output-dir",
            str(tmp_path / "out"),
            flag,
            value,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and words in err, err  # not "no such file": nothing was read
    assert not (tmp_path / "out").exists()


def test_checkpoint_killed_mid_swap_is_recovered_by_resume(two_checkpoints, tmp_path):
    import shutil
    import subprocess

    from gpt2kit.checkpoint import _HOST

    out = copy_of(two_checkpoints, tmp_path / "out")
    dead = subprocess.run(["true"]).returncode or subprocess.Popen(["true"])
    dead.wait()  # a process id that is gone
    owner = f"{dead.pid}.{_HOST}"
    # the state a kill between the two renames leaves: target gone, old + complete scratch
    shutil.copytree(out / "checkpoint-4", out / f".checkpoint-4.tmp-{owner}-x1")
    (out / "checkpoint-4").rename(out / f".checkpoint-4.old-{owner}")
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-2", "checkpoint-4"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    resumed = run(out, resume=True, save_steps=2)
    reference = run(copy_of(two_checkpoints, tmp_path / "ref"), resume=True, save_steps=2)
    assert_identical(reference, resumed)  # the recovered checkpoint-4 is the one written
