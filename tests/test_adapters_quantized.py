"""Issue 20, QLoRA-style: LoRA adapters on a weight-only quantized (int8 / int4) frozen base.

The base reference is `QuantizedLinear` itself (its forward, whatever its numerics are):
the adapted model equals the same quantized model with each target replaced by
`quantized(x) + B(A(x)) * scaling` written out here from the adapter file's tensors; and,
on a few rows, `peft` on `transformers`' model whose weights are the quantized ones
dequantized (the same base weights, so equal up to fp32 rounding). Training updates the
adapter only (the int8 buffers stay), lowers the loss, and its folder loads on either
base; merging into a quantized base is refused. Tiny models, built here.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gpt2kit import GPT2ForSequenceClassification, GPT2LMHeadModel, LoraConfig
from gpt2kit.adapters import AdapterError, LoraLinear, ModulesToSave, mixed_batch
from gpt2kit.adapters.layers import is_quantized_linear
from gpt2kit.quantization.modules import QuantizedLinear
from gpt2kit.training import Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).parent))
from test_adapters import TARGETS, TOL, _hf_base, _ids, _peft_adapter  # noqa: E402
from test_trainer import lm_data  # noqa: E402

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


class _Reference(nn.Module):
    """`quantized(x) + (x @ A^T) @ B^T * scaling`: the adapted layer written out."""

    def __init__(self, quantized: nn.Module, a: torch.Tensor, b: torch.Tensor, scaling: float):
        super().__init__()
        self.quantized, self.a, self.b, self.scaling = quantized, a, b, scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantized(x) + (x @ self.a.T) @ self.b.T * self.scaling


def _written_out(quantized_model: nn.Module, adapter: Path) -> nn.Module:
    """A copy of the quantized model with every LoRA target replaced by `_Reference`,
    from the adapter folder's own tensors and config."""
    from safetensors.torch import load_file

    config = json.loads((adapter / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    state = load_file(str(adapter / "adapter_model.safetensors"))
    model = copy.deepcopy(quantized_model)
    done = 0
    for key in state:
        if not key.endswith("lora_A.weight"):
            continue
        path = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        parent, _, child = path.rpartition(".")
        quantized = model.get_submodule(path)
        assert isinstance(quantized, QuantizedLinear)
        b = state[key.replace("lora_A", "lora_B")]
        setattr(model.get_submodule(parent), child, _Reference(quantized, state[key], b, scaling))
        done += 1
    assert done, "the adapter holds no LoRA weights"
    return model.eval()


def _dequantized_twin(quantized_model: nn.Module, base: Path, out: Path, cls=GPT2LMHeadModel):
    """The float base with each quantized weight replaced by its dequantized value, saved
    to `out` (so `transformers` and `peft` read the same base weights)."""
    model = cls.from_pretrained(base)
    with torch.no_grad():
        for path, module in quantized_model.named_modules():
            if isinstance(module, QuantizedLinear):
                model.get_submodule(path).weight.copy_(module.dequantize())
    model.save_pretrained(out)
    return model.eval()


@pytest.mark.parametrize("bits", ["int8", "int4"])
def test_peft_adapter_on_a_quantized_base(tmp_path, tiny_config, bits):
    pm, base, adapter = _peft_adapter(tmp_path, tiny_config())
    quantized = GPT2LMHeadModel.from_pretrained(base, quantization=bits)
    reference = _written_out(quantized, adapter)
    model = copy.deepcopy(quantized)
    model.load_adapter(adapter)
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, LoraLinear) and layer.quantized
    assert isinstance(layer.base_layer, QuantizedLinear)
    ids = _ids(2, 8)
    with torch.no_grad():
        got = model(ids).logits
        torch.testing.assert_close(got, reference(ids).logits, atol=TOL, rtol=0)
        assert (got - quantized(ids).logits).abs().max() > 1e-3  # (the adapter does something)
    # the same adapter file on the dequantized float base, in gpt2kit and in peft
    twin = _dequantized_twin(quantized, base, tmp_path / "dequantized")
    twin.load_adapter(adapter)
    hf = peft.PeftModel.from_pretrained(_hf_base(tmp_path / "dequantized"), adapter).eval()
    with torch.no_grad():
        torch.testing.assert_close(got, twin(ids).logits, atol=TOL, rtol=0)
        torch.testing.assert_close(got, hf(input_ids=ids).logits, atol=TOL, rtol=0)
    # disabled: the quantized base alone
    model.disable_adapters()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, quantized(ids).logits, atol=0, rtol=0)


def test_peft_classifier_adapter_on_a_quantized_base(tmp_path, tiny_config):
    """`modules_to_save` over a quantized head: the adapter's copy is a float `nn.Linear`
    (the file's `score.weight`), the base keeps its quantized head."""
    config = tiny_config(pad_token_id=98)
    _, base, adapter = _peft_adapter(
        tmp_path, config, "GPT2ForSequenceClassification", task_type="SEQ_CLS"
    )
    quantized = GPT2ForSequenceClassification.from_pretrained(base, quantization="int8")
    assert isinstance(quantized.score, QuantizedLinear)
    model = copy.deepcopy(quantized)
    model.load_adapter(adapter)
    assert isinstance(model.score, ModulesToSave)
    assert type(model.score.modules_to_save["default"]) is nn.Linear
    assert is_quantized_linear(model.score.original_module)
    twin = _dequantized_twin(
        quantized, base, tmp_path / "dequantized", GPT2ForSequenceClassification
    )
    hf = _hf_base(tmp_path / "dequantized", "GPT2ForSequenceClassification")
    hf = peft.PeftModel.from_pretrained(hf, adapter).eval()
    ids = _ids(2, 8)
    with torch.no_grad():
        got = model(input_ids=ids).logits
        torch.testing.assert_close(got, hf(input_ids=ids).logits, atol=TOL, rtol=0)
        twin.load_adapter(adapter)
        torch.testing.assert_close(got, twin(input_ids=ids).logits, atol=TOL, rtol=0)


def test_qlora_training_updates_only_the_adapter_and_lowers_the_loss(tmp_path, tiny_config):
    torch.manual_seed(0)
    GPT2LMHeadModel(tiny_config(vocab_size=128)).save_pretrained(tmp_path / "base")
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "base", quantization="int8")
    model.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    assert any(k.endswith("qweight") for k in frozen)
    # gradients go through the quantized layers to the first block's adapter
    model.train()
    ids = _ids(2, 8)
    model(input_ids=ids, labels=ids).loss.backward()
    first = model.transformer.h[0].attn.c_attn.lora_B["default"].weight
    assert first.grad is not None and first.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)

    args = TrainingArguments(
        str(tmp_path / "out"), max_steps=24, per_device_train_batch_size=4, learning_rate=2e-2,
        logging_steps=4, disable_tqdm=True, save_at_end=False, report_to_tensorboard=False,
    )  # fmt: skip
    trainer = Trainer(model, args, lm_data(16))
    trainer.train()
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for n, p in model.named_parameters() if n in trainable}
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert losses[-1] < losses[0] - 0.1, losses
    for key, value in model.state_dict().items():
        if key in frozen:
            assert torch.equal(value, frozen[key]), f"{key} moved"
    # the folder is a plain peft adapter: it loads on the quantized base and the float one
    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    names = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert "model.safetensors" not in names
    again = GPT2LMHeadModel.from_pretrained(tmp_path / "adapter", quantization="int8")
    assert again.transformer.h[0].attn.c_attn.quantized
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, atol=0, rtol=0)
    on_float = GPT2LMHeadModel.from_pretrained(tmp_path / "adapter")
    assert not on_float.transformer.h[0].attn.c_attn.quantized


def test_merging_into_a_quantized_base_is_refused(tmp_path, tiny_config):
    GPT2LMHeadModel(tiny_config()).save_pretrained(tmp_path / "base")
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "base", quantization="int8")
    model.add_adapter(LoraConfig(r=2, target_modules=TARGETS, init_lora_weights=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for call in (model.merge_adapter, model.merge_and_unload):
        with pytest.raises(AdapterError, match="quantized.*without quantization"):
            call()
    for key, value in model.state_dict().items():  # nothing half merged or unloaded
        assert torch.equal(value, before[key]), key
    assert model.active_adapters() == ["default"]
    assert model.unload() is model  # (unload without merging is fine)
    assert isinstance(model.transformer.h[0].attn.c_attn, QuantizedLinear)


def test_mixed_adapters_on_a_quantized_base_through_the_cpu_decoder(tmp_path, tiny_config):
    """The server's path on a quantized base: the base products through the decoder's
    quantized kernel, each row's update its own adapter's; equal to each row alone."""
    from gpt2kit.decode import cpu_decoder, native

    if native.load() is None:
        pytest.skip("no C compiler: the native kernels are not built")
    GPT2LMHeadModel(tiny_config()).save_pretrained(tmp_path / "base")
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "base", quantization="int8")
    torch.manual_seed(1)
    model.add_adapter(LoraConfig(r=4, target_modules=TARGETS, init_lora_weights=False), "a")
    model.add_adapter(LoraConfig(r=2, target_modules=["c_attn"], init_lora_weights=False), "b")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_" in n:
                p.normal_(0, 0.5)
    model.eval()
    names = ["a", "__base__", "b", "a"]
    ids = _ids(4, 6)
    calls = []
    original = native.qgemv

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    def decode(rows, row_names, steps=4):
        decoder = cpu_decoder(model, rows.shape[0])
        assert decoder is not None
        with torch.no_grad(), mixed_batch(row_names):
            out = decoder(input_ids=rows, use_cache=True)
            cache, tokens = out.past_key_values, []
            for _ in range(steps):
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                tokens.append(tok)
                out = decoder(input_ids=tok, past_key_values=cache, use_cache=True)
        return torch.cat(tokens, 1)

    native.qgemv = counting
    try:
        together = decode(ids, names)
    finally:
        native.qgemv = original
    assert calls, "the quantized base products did not run through the native kernel"
    for i, name in enumerate(names):
        if name == "__base__":
            model.disable_adapters()
        else:
            model.set_adapter(name)
        with torch.no_grad():  # an argmax loop over the model's own forward
            row, want = ids[i : i + 1], []
            for _ in range(4):
                tok = model(row).logits[:, -1].argmax(-1, keepdim=True)
                want.append(tok)
                row = torch.cat([row, tok], 1)
        model.enable_adapters()
        assert together[i].tolist() == torch.cat(want, 1)[0].tolist(), (i, name)


def test_cli_trains_a_lora_adapter_on_a_quantized_base(tmp_path):
    from gpt2kit.cli.train import TrainCLIError, main
    from test_adapters_training import _base_folder

    base = _base_folder(tmp_path)
    (tmp_path / "train.txt").write_text("hello world, this is a tiny corpus. " * 40)
    common = ["train", "--task", "causal-lm", "--model", str(base), "--train-file",
              str(tmp_path / "train.txt"), "--max-steps", "2", "--block-size", "16",
              "--no-progress"]  # fmt: skip
    out = tmp_path / "qlora"
    assert main([*common, "--output-dir", str(out), "--lora", "r=2,alpha=4,targets=c_attn",
                 "--quantize", "int8"]) == 0  # fmt: skip
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["r"] == 2 and saved["target_modules"] == ["c_attn"]
    assert not (out / "model.safetensors").exists()
    model = GPT2LMHeadModel.from_pretrained(out, quantization="int8")
    assert model.transformer.h[0].attn.c_attn.quantized
    with pytest.raises(TrainCLIError, match="--quantize int8 trains a LoRA adapter.*--lora"):
        main([*common, "--output-dir", str(tmp_path / "full"), "--quantize", "int8"])
