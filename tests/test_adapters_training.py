"""Training LoRA adapters: only the adapter trains and is checkpointed, resume is
bit-exact, a small task is learned with >= 95% fewer trainable parameters, and the CLI
(`train --lora`, YAML `lora:`, `convert --merge-adapter`) end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpt2kit import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel
from gpt2kit.adapters import LoraConfig
from gpt2kit.training import Trainer, TrainingArguments, last_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import RUN, StopAt  # noqa: E402
from test_trainer import lm_data, tiny_lm  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
LORA = dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], lora_dropout=0.1)


def _lora_lm() -> GPT2LMHeadModel:
    model = tiny_lm(dropout=0.1)
    model.add_adapter(LoraConfig(**LORA))
    return model


def _run(out: Path, resume=None, callbacks=()) -> GPT2LMHeadModel:
    model = _lora_lm()
    args = TrainingArguments(str(out), **{**RUN, "save_steps": 3})
    trainer = Trainer(model, args, lm_data(20), callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    return model


def test_only_the_adapter_trains_and_is_checkpointed(tmp_path):
    base = _lora_lm()
    frozen = {k: v.clone() for k, v in base.state_dict().items() if ".lora_" not in k}
    args = TrainingArguments(str(tmp_path), **{**RUN, "max_steps": 3, "save_steps": 3})
    trainer = Trainer(base, args, lm_data(20))
    trainer.train()
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    adapter = {id(p) for n, p in base.named_parameters() if ".lora_" in n}
    assert in_optimizer == adapter
    for key, value in base.state_dict().items():  # the base did not move
        if key in frozen:
            assert torch.equal(value, frozen[key]), key
    folder = tmp_path / "checkpoint-3"
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "optimizer.pt"} <= names
    assert not names & {"model.safetensors", "pytorch_model.bin"}
    keys = load_file(str(folder / "adapter_model.safetensors"))
    assert keys and all(".lora_" in k for k in keys)
    # the optimizer state is the adapter's too: small
    adapter_bytes = sum(t.numel() * 4 for t in keys.values())
    assert (folder / "optimizer.pt").stat().st_size < 4 * adapter_bytes + 20_000


@pytest.mark.parametrize("stop", [2, 4])
def test_resume_with_an_adapter_is_bit_identical(tmp_path, stop):
    reference = _run(tmp_path / "ref")
    _run(tmp_path / "run", callbacks=[StopAt(stop)])
    assert last_checkpoint(tmp_path / "run").name == f"checkpoint-{stop}"
    resumed = _run(tmp_path / "run", resume=True)
    for (name, a), b in zip(
        reference.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), f"{name} differs after resume"
    ref_log = (tmp_path / "ref" / "log.jsonl").read_text().splitlines()
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in log] == [json.loads(x)["loss"] for x in ref_log]


def _marker_task(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Label 1 if the row holds token 3, 0 if token 4, at a random place among random ids."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(10, 98, (12,), generator=g)
        label = int(torch.randint(0, 2, (1,), generator=g))
        ids[int(torch.randint(0, 12, (1,), generator=g))] = 3 if label else 4
        mask = torch.ones(12, dtype=torch.long)
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(label)})
    return rows


def test_lora_learns_a_held_out_task_with_95_percent_fewer_trainable_parameters(tmp_path):
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32, num_labels=2,
        pad_token_id=99,
    )  # fmt: skip
    model = GPT2ForSequenceClassification(config)
    model.add_adapter(
        LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn", "c_fc"], modules_to_save=["score"])
    )
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable <= 0.05 * total, (trainable, total)
    args = TrainingArguments(
        str(tmp_path), max_steps=60, per_device_train_batch_size=32, learning_rate=1e-2,
        disable_tqdm=True, logging_steps=60, save_at_end=False, report_to_tensorboard=False,
    )  # fmt: skip
    Trainer(model, args, _marker_task(512, seed=1)).train()
    held_out = _marker_task(200, seed=2)
    ids = torch.stack([r["input_ids"] for r in held_out])
    labels = torch.stack([r["labels"] for r in held_out])
    model.eval()
    with torch.no_grad():
        accuracy = (model(input_ids=ids).logits.argmax(-1) == labels).float().mean().item()
        model.disable_adapters()
        base = (model(input_ids=ids).logits.argmax(-1) == labels).float().mean().item()
    assert accuracy >= 0.9, accuracy
    assert base < 0.7, base


# -- the command line ----------------------------------------------------------------------------
def _base_folder(tmp_path: Path) -> Path:
    from gpt2kit import GPT2Tokenizer

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64))
    folder = tmp_path / "base"
    model.save_pretrained(folder, tokenizer=GPT2Tokenizer.from_pretrained("gpt2"))
    return folder


def _sentiment(path: Path, n: int) -> None:
    from test_train_cli import write_sentiment

    write_sentiment(path, n, seed=0)


def test_cli_train_lora_then_convert_merge_adapter(tmp_path, capsys):
    from gpt2kit.cli import main as gpt2kit_main
    from gpt2kit.cli.train import main

    base = _base_folder(tmp_path)
    _sentiment(tmp_path / "train.csv", 32)
    out = tmp_path / "out"
    code = main(
        ["train", "--task", "sequence-classification", "--model", str(base),
         "--train-file", str(tmp_path / "train.csv"), "--output-dir", str(out),
         "--max-steps", "4", "--batch-size", "8", "--lr", "1e-2", "--save-steps", "2",
         "--lora", "r=4,alpha=16,targets=c_attn,c_proj,c_fc", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    assert "--merge-adapter" in capsys.readouterr().out
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["r"] == 4 and saved["lora_alpha"] == 16
    assert saved["target_modules"] == ["c_attn", "c_proj", "c_fc"]
    assert "score" in saved["modules_to_save"] and saved["task_type"] == "SEQ_CLS"
    assert not (out / "model.safetensors").exists()
    assert not (out / "checkpoint-2" / "model.safetensors").exists()
    metrics = tmp_path / "m.json"
    code = main(
        ["evaluate", "--task", "sequence-classification", "--model", str(out),
         "--eval-file", str(tmp_path / "train.csv"), "--json", str(metrics)]
    )  # fmt: skip
    assert code == 0 and "accuracy" in json.loads(metrics.read_text())
    adapted = GPT2ForSequenceClassification.from_pretrained(out)  # (base + adapter)
    assert adapted.active_adapters() == ["default"]
    assert adapted.config.id2label == {0: "neg", 1: "pos"}

    merged = tmp_path / "merged"
    assert gpt2kit_main(["convert", str(out), str(merged), "--merge-adapter"]) == 0
    assert (merged / "model.safetensors").is_file() and not (
        merged / "adapter_config.json"
    ).exists()
    plain = GPT2ForSequenceClassification.from_pretrained(merged)
    assert not plain.has_adapters
    ids = torch.randint(0, 50000, (2, 9))
    mask = torch.ones_like(ids)
    torch.testing.assert_close(
        plain(input_ids=ids, attention_mask=mask).logits,
        adapted(input_ids=ids, attention_mask=mask).logits,
        atol=1e-5,
        rtol=0,
    )
    # a classifier's adapter on the LM base: its score head has no place there
    code = gpt2kit_main(["convert", str(base), str(tmp_path / "bad"), "--merge-adapter", str(out)])
    assert code != 0
    assert "score.weight" in capsys.readouterr().err


def test_cli_lora_from_yaml_and_errors(tmp_path):
    from gpt2kit.adapters import AdapterConfigError
    from gpt2kit.cli.train import main

    base = _base_folder(tmp_path)
    (tmp_path / "train.txt").write_text("hello world, this is a tiny corpus. " * 40)
    run = tmp_path / "run.yaml"
    run.write_text(
        f"task: causal-lm\nmodel: {base}\ntrain-file: {tmp_path / 'train.txt'}\n"
        f"output-dir: {tmp_path / 'lm'}\nmax-steps: 2\nblock-size: 16\nno-progress: true\n"
        "lora:\n  r: 2\n  alpha: 4\n  targets: [c_attn]\n"
    )
    assert main(["train", "--config", str(run)]) == 0
    saved = json.loads((tmp_path / "lm" / "adapter_config.json").read_text())
    assert saved["r"] == 2 and saved["target_modules"] == ["c_attn"]
    assert saved["modules_to_save"] is None and saved["task_type"] == "CAUSAL_LM"
    # the other convert form: the base as source, the adapter named
    from gpt2kit.cli import main as gpt2kit_main

    merged = tmp_path / "merged"
    assert (
        gpt2kit_main(["convert", str(base), str(merged), "--merge-adapter", str(tmp_path / "lm")])
        == 0
    )
    adapted = GPT2LMHeadModel.from_pretrained(tmp_path / "lm")
    ids = torch.randint(0, 50000, (1, 7))
    torch.testing.assert_close(
        GPT2LMHeadModel.from_pretrained(merged)(ids).logits, adapted(ids).logits, atol=1e-5, rtol=0
    )
    with pytest.raises(AdapterConfigError, match="unknown key 'rank'"):
        main(["train", "--config", str(run), "--lora", "rank=4"])
