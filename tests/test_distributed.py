"""Data parallel: 2 CPU processes (gloo, launched by torchrun) train like 1 with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TORCHRUN = Path(sys.executable).with_name("torchrun")

WORKER = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_distributed import train
    from gpt2kit.training.distributed import env_world_size

    train({out!r}, per_device=8 // env_world_size())  # same global batch whatever the process count
    """
)


def train(out: str, per_device: int) -> None:
    from gpt2kit.training import Trainer, TrainingArguments
    from test_trainer import lm_data, tiny_lm

    args = TrainingArguments(
        out, max_steps=6, per_device_train_batch_size=per_device, gradient_accumulation_steps=2,
        learning_rate=3e-3, warmup_steps=2, weight_decay=0.1, logging_steps=1, disable_tqdm=True,
        save_steps=3, device="cpu",
    )  # fmt: skip
    Trainer(tiny_lm(dropout=0.0), args, lm_data(40)).train()


sys.path.insert(0, str(Path(__file__).parent))


def launch(tmp_path: Path, nproc: int) -> Path:
    out = tmp_path / f"np{nproc}"
    script = tmp_path / f"worker{nproc}.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", str(script)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside python")
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_processes_match_one(tmp_path):
    one = tmp_path / "np1"
    torch.set_num_threads(1)
    train(str(one), per_device=8)  # the 1-process reference, in this process
    two = launch(tmp_path, 2)
    curve = [json.loads(x)["loss"] for x in (one / "log.jsonl").read_text().splitlines()]
    curve2 = [json.loads(x)["loss"] for x in (two / "log.jsonl").read_text().splitlines()]
    assert len(curve) == len(curve2) == 6
    assert curve == pytest.approx(curve2, abs=1e-5)
    # only rank 0 wrote: one log line per step, checkpoints once
    assert sorted(p.name for p in two.iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-3",
        "checkpoint-6",
    ]
    w1 = load_file(str(one / "checkpoint-6" / "model.safetensors"))
    w2 = load_file(str(two / "checkpoint-6" / "model.safetensors"))
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], atol=1e-5, rtol=1e-4)
