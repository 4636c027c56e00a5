"""Data parallel: 2 CPU processes (gloo, launched by torchrun) train like 1 with the same global batch.

DDP (`test_two_processes_match_one`) and FSDP2 (`test_fsdp_two_processes_match_one`, slow):
same loss curve, checkpoints in the single-process format, exact resume.
"""

from __future__ import annotations

import json
import math
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


# -- FSDP ---------------------------------------------------------------------------------------------
FSDP_WORKER = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_distributed import fsdp_args
    from test_trainer import lm_data, tiny_lm
    from gpt2kit.training import Trainer
    from gpt2kit.training.distributed import get_rank, is_fsdp
    from gpt2kit.training.state import load_weights

    root = Path({root!r})
    facts = {{}}
    model = tiny_lm()
    trainer = Trainer(model, fsdp_args(root / "fsdp", 4), lm_data(40), lm_data(8, seed=1))
    trainer.train()
    facts["sharded"] = is_fsdp(model)
    facts["tied"] = model.lm_head.weight is model.transformer.wte.weight
    load_weights(model, root / "fsdp" / "checkpoint-3")  # a sharded load, then a gathered save
    trainer.save_model(root / "fsdp" / "reloaded-3")
    # resume from the FSDP checkpoint (fresh weights: all must come from the checkpoint)
    Trainer(tiny_lm(seed=1), fsdp_args(root / "resumed", 4), lm_data(40), lm_data(8, seed=1)).train(
        resume_from_checkpoint=root / "fsdp" / "checkpoint-3"
    )
    # resume the single-process run's checkpoint (optimizer keyed by position) under FSDP
    Trainer(tiny_lm(seed=2), fsdp_args(root / "from-one", 4), lm_data(40), lm_data(8, seed=1)).train(
        resume_from_checkpoint=root / "one" / "checkpoint-3"
    )
    # bf16 (weights gathered in bfloat16) with gradient checkpointing: runs, stays finite
    out = Trainer(
        tiny_lm(), fsdp_args(root / "bf16", 4, max_steps=2, bf16=True, gradient_checkpointing=True,
        save_at_end=False, eval_steps=None), lm_data(40),
    ).train()
    facts["bf16_loss"] = out.training_loss
    if get_rank() == 0:
        (root / "facts.json").write_text(json.dumps(facts))
    """
)


def fsdp_args(out: Path, per_device: int, **kw):
    from gpt2kit.training import TrainingArguments

    base = dict(
        max_steps=6, per_device_train_batch_size=per_device, gradient_accumulation_steps=2,
        learning_rate=3e-3, warmup_steps=2, weight_decay=0.1, logging_steps=1, disable_tqdm=True,
        save_steps=3, eval_steps=3, load_best_model_at_end=True, max_grad_norm=0.5,
        device="cpu", fsdp=per_device < 8,  # the 1-process reference (batch 8) runs unsharded
        report_to_tensorboard=False, plot=False,
    )  # fmt: skip
    base.update(kw)
    return TrainingArguments(str(out), **base)


def _log(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow  # ~35 s on 2 shared cores: one torchrun launch running four short trainings
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside python")
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_fsdp_two_processes_match_one(tmp_path):
    from gpt2kit import GPT2LMHeadModel
    from gpt2kit.training import Trainer
    from test_trainer import lm_data, tiny_lm

    torch.set_num_threads(1)
    # the reference: one process, no sharding, same global batch (8 x 2 micro-batches)
    Trainer(tiny_lm(), fsdp_args(tmp_path / "one", 8), lm_data(40), lm_data(8, seed=1)).train()
    script = tmp_path / "fsdp_worker.py"
    script.write_text(FSDP_WORKER.format(tests=str(Path(__file__).parent), root=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts["sharded"] and facts["tied"]
    assert math.isfinite(facts["bf16_loss"])

    one, fsdp = _log(tmp_path / "one"), _log(tmp_path / "fsdp")
    train_keys = [(r["step"], "loss" in r, "eval_loss" in r) for r in one]
    assert train_keys == [(r["step"], "loss" in r, "eval_loss" in r) for r in fsdp]
    for key in ("loss", "grad_norm", "eval_loss"):  # clipping at 0.5 is active: norms reach 1.5
        a = [r[key] for r in one if key in r]
        b = [r[key] for r in fsdp if key in r]
        assert a == pytest.approx(b, abs=1e-5), key  # measured: max difference 4.8e-7

    # the checkpoint is the single-process format: from_pretrained loads it, tied, equal weights
    ckpt = tmp_path / "fsdp" / "checkpoint-6"
    loaded = GPT2LMHeadModel.from_pretrained(ckpt)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    reference = GPT2LMHeadModel.from_pretrained(tmp_path / "one" / "checkpoint-6")
    for (key, a), b in zip(
        loaded.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=key)
    assert "lm_head.weight" not in _weights(ckpt)  # tied: stored once, as transformers does
    optim = torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert "transformer.h.0.attn.c_attn.weight" in optim["state"]  # keyed by name

    # a sharded load then a gathered save gives the checkpoint's weights back exactly
    w3, r3 = (
        _weights(tmp_path / "fsdp" / "checkpoint-3"),
        _weights(tmp_path / "fsdp" / "reloaded-3"),
    )
    assert w3.keys() == r3.keys() and all(torch.equal(w3[k], r3[k]) for k in w3)

    # resuming the FSDP checkpoint under FSDP continues bit-exactly
    w6, resumed = _weights(ckpt), _weights(tmp_path / "resumed" / "checkpoint-6")
    assert all(torch.equal(w6[k], resumed[k]) for k in w6)
    assert [r["loss"] for r in _log(tmp_path / "resumed") if "loss" in r] == [
        r["loss"] for r in fsdp if "loss" in r and r["step"] > 3
    ]
    # a single-process checkpoint resumes under FSDP, and an FSDP one in a single process
    w1 = _weights(tmp_path / "one" / "checkpoint-6")
    from_one = _weights(tmp_path / "from-one" / "checkpoint-6")
    Trainer(
        tiny_lm(seed=3), fsdp_args(tmp_path / "single", 8), lm_data(40), lm_data(8, seed=1)
    ).train(resume_from_checkpoint=tmp_path / "fsdp" / "checkpoint-3")
    single = _weights(tmp_path / "single" / "checkpoint-6")
    for key in w1:
        torch.testing.assert_close(from_one[key], w1[key], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(single[key], w1[key], atol=1e-5, rtol=1e-4)


def test_fsdp_argument_and_flag():
    import argparse

    from gpt2kit.cli.train import register
    from gpt2kit.training import TrainingArguments
    from gpt2kit.training.distributed import fsdp_mode

    assert fsdp_mode(TrainingArguments("o", fsdp=True).fsdp) == "full_shard"
    assert fsdp_mode(TrainingArguments("o", fsdp="shard_grad_op").fsdp) == "shard_grad_op"
    assert fsdp_mode(TrainingArguments("o").fsdp) is None
    with pytest.raises(ValueError, match="fsdp='zero3'.*full_shard"):
        TrainingArguments("o", fsdp="zero3")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["train", "--fsdp"]).fsdp == "full_shard"
    assert parser.parse_args(["train", "--fsdp", "shard_grad_op"]).fsdp == "shard_grad_op"
    assert parser.parse_args(["train"]).fsdp is None


def test_fsdp_units_are_blocks_that_share_nothing():
    from gpt2kit.nn.backbone import GPT2Block
    from gpt2kit.training.distributed import shard_units
    from test_trainer import tiny_lm

    model = tiny_lm()
    assert shard_units(model) == list(model.transformer.h)
    # a block whose weight is tied to something outside it stays in the root group
    model.transformer.h[1].mlp.c_proj.weight = model.transformer.h[0].mlp.c_proj.weight
    units = shard_units(model)
    assert units == [] and all(isinstance(b, GPT2Block) for b in model.transformer.h)


def test_fsdp_in_one_process_trains_unsharded(tmp_path):
    from gpt2kit.training import Trainer
    from gpt2kit.training.distributed import is_fsdp
    from test_trainer import lm_data, tiny_lm

    model = tiny_lm()
    args = fsdp_args(tmp_path, 4, fsdp=True, max_steps=2, save_steps=None, eval_steps=None)
    out = Trainer(model, args, lm_data(16)).train()
    assert out.global_step == 2 and not is_fsdp(model)
    assert (tmp_path / "checkpoint-2" / "model.safetensors").is_file()
