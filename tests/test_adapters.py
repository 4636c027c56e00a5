"""LoRA adapters in the `peft` format: parity with `peft` both ways, merge, disable,
delete, generate, errors. `peft` (a test dependency) is the reference throughout; every
model is tiny and built here, nothing is downloaded."""

from __future__ import annotations

import json

import pytest
import torch

import gpt2kit
from conftest import make_hf_twin
from gpt2kit import (
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
)
from gpt2kit.adapters import (
    BASE,
    AdapterConfigError,
    AdapterError,
    LoraConfig,
    LoraLinear,
    ModulesToSave,
    mixed_batch,
)

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

TARGETS = ["c_attn", "c_proj", "c_fc"]
TOL = 1e-5


def _ids(n: int = 2, t: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 99, (n, t), generator=torch.Generator().manual_seed(seed))


def _peft_adapter(tmp_path, config, hf_class="GPT2LMHeadModel", **lora):
    """A transformers twin, a random (non-zero) peft adapter on it, saved; returns
    (peft model, base folder, adapter folder)."""
    hf, base = make_hf_twin(config, tmp_path / "base", hf_class, num_labels=3)
    torch.manual_seed(3)
    lora.setdefault("target_modules", TARGETS)
    lora.setdefault("init_lora_weights", False)
    pm = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=8, **lora)).eval()
    if lora.get("modules_to_save") or lora.get("task_type"):
        with torch.no_grad():  # the head copy differs from the base's head
            for name, p in pm.named_parameters():
                if "modules_to_save" in name:
                    p.add_(torch.randn_like(p) * 0.1)
    pm.save_pretrained(tmp_path / "adapter")
    return pm, base, tmp_path / "adapter"


def _hf_base(base, hf_class="GPT2LMHeadModel"):
    cls = getattr(transformers, hf_class)
    return cls.from_pretrained(base, attn_implementation="eager").eval()


# -- peft -> gpt2kit ---------------------------------------------------------------------------
def test_peft_adapter_loads_with_peft_logits(tmp_path, tiny_config):
    pm, base, adapter = _peft_adapter(tmp_path, tiny_config())
    model = GPT2LMHeadModel.from_pretrained(base)
    model.load_adapter(adapter)
    assert model.active_adapters() == ["default"]
    assert json.loads((adapter / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    ids = _ids()
    torch.testing.assert_close(model(ids).logits, pm(ids).logits, atol=TOL, rtol=0)
    assert isinstance(model.transformer.h[0].attn.c_attn, LoraLinear)
    # loaded for inference (transformers' is_trainable=False): nothing trains
    assert not any(p.requires_grad for p in model.parameters())


def test_fan_in_fan_out_false_in_the_file_reads_the_same(tmp_path, tiny_config):
    """peft sets fan_in_fan_out=True on GPT-2's Conv1D whatever the config says; A and B
    have one layout, so a file that says False loads to the same numbers."""
    pm, base, adapter = _peft_adapter(tmp_path, tiny_config(), fan_in_fan_out=False)
    path = adapter / "adapter_config.json"
    data = json.loads(path.read_text())
    data["fan_in_fan_out"] = False
    path.write_text(json.dumps(data))
    model = GPT2LMHeadModel.from_pretrained(base)
    model.load_adapter(adapter)
    ids = _ids()
    torch.testing.assert_close(model(ids).logits, pm(ids).logits, atol=TOL, rtol=0)
    # and peft itself reads the False file to the same numbers
    again = peft.PeftModel.from_pretrained(_hf_base(base), adapter).eval()
    torch.testing.assert_close(again(ids).logits, pm(ids).logits, atol=TOL, rtol=0)


def test_peft_sequence_classification_adapter_with_score_head(tmp_path, tiny_config):
    config = tiny_config(pad_token_id=98)
    pm, base, adapter = _peft_adapter(
        tmp_path, config, "GPT2ForSequenceClassification", task_type="SEQ_CLS", bias="lora_only"
    )
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert "score" in saved["modules_to_save"]
    model = GPT2ForSequenceClassification.from_pretrained(base)
    model.load_adapter(adapter)
    assert isinstance(model.score, ModulesToSave)
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = 98  # (transformers pools at the last non-pad id, gpt2kit from the mask)
    ref = pm(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(
        model(input_ids=ids, attention_mask=mask).logits, ref, atol=TOL, rtol=0
    )
    # bias="lora_only": the file's projection biases replaced the base's, as in peft
    assert torch.equal(
        model.transformer.h[0].attn.c_attn.bias,
        pm.base_model.model.transformer.h[0].attn.c_attn.base_layer.bias,
    )


def test_bare_backbone_adapter_loads_into_a_task_model_and_back(tmp_path, tiny_config):
    """peft on transformers' GPT2Model writes `h.0...` keys; an LM adapter writes
    `transformer.h.0...`: either loads into either, as full checkpoints do."""
    pm, base, adapter = _peft_adapter(tmp_path, tiny_config(), "GPT2Model")
    ids = _ids()
    backbone = GPT2Model.from_pretrained(base)
    backbone.load_adapter(adapter)
    ref = pm(ids).last_hidden_state
    torch.testing.assert_close(backbone(ids).last_hidden_state, ref, atol=TOL, rtol=0)
    lm = GPT2LMHeadModel.from_pretrained(base)
    lm.load_adapter(adapter)
    torch.testing.assert_close(lm.transformer(ids).last_hidden_state, ref, atol=TOL, rtol=0)


# -- gpt2kit -> peft ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,hf_class,output",
    [
        (GPT2LMHeadModel, "GPT2LMHeadModel", "logits"),
        (GPT2ForSequenceClassification, "GPT2ForSequenceClassification", "logits"),
        (GPT2ForTokenClassification, "GPT2ForTokenClassification", "logits"),
        (GPT2ForQuestionAnswering, "GPT2ForQuestionAnswering", "start_logits"),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", str(v)),
)
def test_gpt2kit_adapter_loads_in_peft_with_identical_outputs(
    tmp_path, tiny_config, cls, hf_class, output
):
    config = tiny_config(pad_token_id=98)
    _, base = make_hf_twin(config, tmp_path / "base", hf_class, num_labels=3)
    model = cls.from_pretrained(base)
    heads = {"GPT2LMHeadModel": None, "GPT2ForQuestionAnswering": ["qa_outputs"]}
    save = heads.get(hf_class, ["score"] if "Sequence" in hf_class else ["classifier"])
    model.add_adapter(
        LoraConfig(r=4, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False,
                   modules_to_save=save, lora_dropout=0.1)
    )  # fmt: skip
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    model.save_pretrained(tmp_path / "mine")
    files = {p.name for p in (tmp_path / "mine").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert "model.safetensors" not in files
    pm = peft.PeftModel.from_pretrained(_hf_base(base, hf_class), tmp_path / "mine").eval()
    ids = _ids()
    ours, theirs = getattr(model(ids), output), getattr(pm(ids), output)
    torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)
    # the folder loads back into gpt2kit too (from_pretrained on the adapter folder)
    again = cls.from_pretrained(tmp_path / "mine")
    torch.testing.assert_close(getattr(again(ids), output), ours, atol=TOL, rtol=0)


def test_peft_state_dict_keys_are_written(tmp_path, tiny_config):
    from safetensors.torch import load_file

    model = GPT2LMHeadModel(tiny_config())
    model.add_adapter(LoraConfig(r=2, target_modules=["c_attn"]))
    model.save_pretrained(tmp_path / "a")
    keys = set(load_file(str(tmp_path / "a" / "adapter_model.safetensors")))
    assert keys == {
        f"base_model.model.transformer.h.{i}.attn.c_attn.lora_{ab}.weight"
        for i in range(2)
        for ab in "AB"
    }
    assert model.get_adapter_state_dict().keys() == {
        k.removeprefix("base_model.model.") for k in keys
    }


# -- the methods -------------------------------------------------------------------------------
def _adapted(tiny_config, **lora):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    base = model(_ids()).logits
    lora.setdefault("target_modules", TARGETS)
    model.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora))
    model.eval()
    return model, base


def test_merged_equals_unmerged_and_disabled_equals_base(tiny_config):
    model, base = _adapted(tiny_config)
    ids = _ids()
    adapted = model(ids).logits
    assert (adapted - base).abs().max() > 1e-3
    model.disable_adapters()
    torch.testing.assert_close(model(ids).logits, base, atol=0, rtol=0)
    model.enable_adapters()
    weight = model.transformer.h[0].attn.c_attn.weight
    ptr = weight.data_ptr()
    model.merge_adapter()
    assert weight.data_ptr() == ptr  # (in place: the parameter stays)
    torch.testing.assert_close(model(ids).logits, adapted, atol=TOL, rtol=0)
    model.unmerge_adapter()
    torch.testing.assert_close(model(ids).logits, adapted, atol=TOL, rtol=0)
    model.disable_adapters()
    torch.testing.assert_close(model(ids).logits, base, atol=TOL, rtol=0)
    model.merge_adapter()
    model.disable_adapters()  # (merged, then disabled: unmerged first)
    torch.testing.assert_close(model(ids).logits, base, atol=TOL, rtol=0)
    model.enable_adapters()
    torch.testing.assert_close(model(ids).logits, adapted, atol=TOL, rtol=0)


def test_several_adapters_set_adapter_and_delete(tiny_config):
    model, base = _adapted(tiny_config)
    ids = _ids()
    first = model(ids).logits
    model.add_adapter(
        LoraConfig(r=2, target_modules=["c_fc"], init_lora_weights=False), adapter_name="second"
    )
    assert model.active_adapters() == ["second"]  # (add_adapter activates, as transformers)
    second = model(ids).logits
    model.set_adapter(["default", "second"])
    assert model.active_adapters() == ["default", "second"]
    # on a layer both adapters have, the updates add
    layer = model.transformer.h[0].mlp.c_fc
    x = torch.randn(3, 32)
    with torch.no_grad():
        expected = layer.base_layer(x) + sum(
            layer.lora_B[n](layer.lora_A[n](x)) * layer.scaling[n] for n in ("default", "second")
        )
        torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(model(ids).logits, first) and not torch.allclose(
        model(ids).logits, second
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    model.set_adapter("default")
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".second." in n)
    torch.testing.assert_close(model(ids).logits, first, atol=TOL, rtol=0)
    model.delete_adapter("default")
    assert model.active_adapters() == ["second"]
    torch.testing.assert_close(model(ids).logits, second, atol=TOL, rtol=0)
    model.delete_adapter("second")
    assert not model.has_adapters
    assert type(model.transformer.h[0].attn.c_attn) is gpt2kit.nn.backbone.Linear
    plain_keys = set(GPT2LMHeadModel(tiny_config()).state_dict())
    assert set(model.state_dict()) == plain_keys
    torch.testing.assert_close(model(ids).logits, base, atol=0, rtol=0)
    with pytest.raises(AdapterError, match="no adapter"):
        model.active_adapters()


def test_merge_and_unload_is_a_plain_model_that_saves_full(tmp_path, tiny_config):
    model, _ = _adapted(tiny_config)
    ids = _ids()
    adapted = model(ids).logits
    plain = model.merge_and_unload()
    assert not plain.has_adapters
    plain.save_pretrained(tmp_path / "full")
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert not (tmp_path / "full" / "adapter_config.json").exists()
    again = GPT2LMHeadModel.from_pretrained(tmp_path / "full")
    torch.testing.assert_close(again(ids).logits, adapted, atol=TOL, rtol=0)


def test_add_adapter_freezes_the_base(tiny_config):
    model = GPT2ForSequenceClassification(tiny_config(num_labels=2, pad_token_id=98))
    model.add_adapter(LoraConfig(r=4, target_modules=TARGETS, modules_to_save=["score"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all(".lora_" in n or n.startswith("score.modules_to_save.default.") for n in trainable)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < 0.2 * total
    # the head copy trains; disabled, the original head (and base) run again
    model.eval()
    ids = _ids()
    before = model(ids).logits
    with torch.no_grad():
        model.score.modules_to_save["default"].weight.add_(1.0)
    assert not torch.allclose(model(ids).logits, before)
    model.disable_adapters()
    torch.testing.assert_close(model(ids).logits, before, atol=0, rtol=0)


def test_rslora_rank_pattern_and_layers(tiny_config):
    config = LoraConfig(
        r=4, lora_alpha=8, use_rslora=True, target_modules=["c_attn"],
        rank_pattern={"h.1.attn.c_attn": 2}, layers_to_transform=[1],
    )  # fmt: skip
    model = GPT2LMHeadModel(tiny_config())
    model.add_adapter(config)
    assert not isinstance(model.transformer.h[0].attn.c_attn, LoraLinear)
    layer = model.transformer.h[1].attn.c_attn
    assert layer.r["default"] == 2 and layer.scaling["default"] == pytest.approx(8 / 2**0.5)


def test_generate_with_an_unmerged_adapter_follows_the_adapted_forward(tiny_config):
    """The CPU decoder must not skip the adapter: greedy tokens from `generate` equal a
    plain argmax loop over the adapted model's forward, batch 1 and a padded batch."""
    model, _ = _adapted(tiny_config)
    prompt = _ids(1, 5)
    out = model.generate(prompt, max_new_tokens=8, do_sample=False)
    ids = prompt
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert out.tolist() == ids.tolist()
    base_out = None
    model.disable_adapters()
    base_out = model.generate(prompt, max_new_tokens=8, do_sample=False)
    assert base_out.tolist() != out.tolist()  # (the adapter changes this model's choices)
    model.enable_adapters()
    model.merge_adapter()  # merged: the same tokens
    assert model.generate(prompt, max_new_tokens=8, do_sample=False).tolist() == out.tolist()


# -- errors ------------------------------------------------------------------------------------
def test_errors_name_the_field(tmp_path, tiny_config):
    model = GPT2LMHeadModel(tiny_config())
    with pytest.raises(AdapterConfigError, match="LM head"):
        model.add_adapter(LoraConfig(target_modules=["lm_head"]))
    with pytest.raises(AdapterConfigError, match="matches no projection"):
        model.add_adapter(LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(AdapterConfigError, match="Embedding"):
        model.add_adapter(LoraConfig(target_modules=["wte"]))
    with pytest.raises(AdapterConfigError, match="use_dora"):
        LoraConfig(use_dora=True)
    with pytest.raises(AdapterConfigError, match="pissa"):
        LoraConfig(init_lora_weights="pissa")
    with pytest.raises(AdapterConfigError, match="does not have"):
        model.add_adapter(LoraConfig(modules_to_save=["scorer"]))
    assert not model.has_adapters
    model.add_adapter(LoraConfig())
    with pytest.raises(AdapterError, match="already exists"):
        model.add_adapter(LoraConfig())
    with pytest.raises(AdapterError, match="no adapter named 'nope'"):
        model.set_adapter("nope")
    # a file with a field gpt2kit does not compute, and a broken JSON
    model.save_pretrained(tmp_path / "a")
    path = tmp_path / "a" / "adapter_config.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "use_dora": True}))
    with pytest.raises(AdapterConfigError, match="use_dora"):
        GPT2LMHeadModel(tiny_config()).load_adapter(tmp_path / "a")
    path.write_text('{\n  "r": 8,\n  oops\n}')
    with pytest.raises(AdapterConfigError, match="line 3"):
        GPT2LMHeadModel(tiny_config()).load_adapter(tmp_path / "a")


def test_a_file_that_does_not_fit_is_an_error(tmp_path, tiny_config):
    model = GPT2LMHeadModel(tiny_config())
    model.add_adapter(LoraConfig(r=4, target_modules=["c_attn"]))
    model.save_pretrained(tmp_path / "a")
    other = GPT2LMHeadModel(tiny_config(n_embd=16))
    with pytest.raises(AdapterError, match="does not fit"):
        other.load_adapter(tmp_path / "a")
    assert not other.has_adapters  # (a failed load leaves no half adapter)
    with pytest.raises(TypeError, match="unsupported keyword"):
        GPT2LMHeadModel(tiny_config()).load_adapter(tmp_path / "a", use_safetensors=True)


def test_peft_lora_config_object_is_accepted(tiny_config):
    model = GPT2LMHeadModel(tiny_config())
    model.add_adapter(peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"]))
    assert model.peft_config["default"].r == 2
    assert model.transformer.h[0].attn.c_attn.scaling["default"] == 2.0


# -- several adapters in one batch ---------------------------------------------------------------
def _two_adapters(tiny_config):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).eval()
    model.add_adapter(LoraConfig(r=4, target_modules=TARGETS, init_lora_weights=False), "a")
    model.add_adapter(LoraConfig(r=2, target_modules=["c_attn"], init_lora_weights=False), "b")
    return model.eval()


def _alone(model, name, *args, **kwargs):
    if name == BASE:
        model.disable_adapters()
    else:
        model.enable_adapters()
        model.set_adapter(name)
    try:
        return model(*args, **kwargs)
    finally:
        model.enable_adapters()


NAMES = ["a", BASE, "b", "a"]


def test_mixed_adapter_batch_equals_each_adapter_alone_and_peft(tmp_path, tiny_config, hf_twin):
    model = _two_adapters(tiny_config)
    ids = _ids(4, 8)
    with mixed_batch(NAMES):
        mixed = model(ids).logits  # (autograd on: per adapter, on its rows)
    with torch.no_grad(), mixed_batch(NAMES):
        stacked = model(ids).logits  # (inference: the stacked form, every row at once)
    torch.testing.assert_close(stacked, mixed, atol=TOL, rtol=0)
    for i, name in enumerate(NAMES):
        alone = _alone(model, name, ids[i : i + 1]).logits
        torch.testing.assert_close(mixed[i : i + 1], alone, atol=TOL, rtol=0)
    # peft's own mixed batch (`adapter_names=`) over the same two adapters
    base = tmp_path / "base"
    model.unload().save_pretrained(base)
    again = _two_adapters(tiny_config)
    for name in ("a", "b"):
        again.set_adapter(name)
        again.save_pretrained(tmp_path / name)
    hf = _hf_base(base)
    pm = peft.PeftModel.from_pretrained(hf, tmp_path / "a", adapter_name="a")
    pm.load_adapter(tmp_path / "b", adapter_name="b")
    pm.eval()
    torch.testing.assert_close(
        pm(input_ids=ids, adapter_names=NAMES).logits, mixed, atol=TOL, rtol=0
    )
    with (
        pytest.raises(ValueError, match="3 adapter names for a batch of 4"),
        mixed_batch(NAMES[:3]),
    ):
        again(ids)
    with pytest.raises(ValueError, match="'c'"), mixed_batch(["a", "b", "c", "a"]):
        again(ids)


def test_mixed_adapter_decoding_through_the_cpu_decoder(tiny_config, monkeypatch):
    """The server's path: prefill and cached one-token steps through `cpu_decoder`, rows
    of different adapters in one batch, equal to each row decoded alone; with the native
    kernels built, the adapted layers' base products and the rows' updates run through
    them (the decoder's fast path, not the modules' PyTorch forward)."""
    from gpt2kit.decode import cpu_decoder, native

    model = _two_adapters(tiny_config)
    ids = _ids(4, 6)
    calls: dict[str, int] = {"gemv": 0, "lora_delta": 0}
    for name in calls:
        original = getattr(native, name)

        def counting(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(native, name, counting)

    def decode(rows, names, steps=4):
        decoder = cpu_decoder(model, rows.shape[0]) or model
        with torch.no_grad(), mixed_batch(names):
            out = decoder(input_ids=rows, use_cache=True)
            cache, tokens = out.past_key_values, []
            for _ in range(steps):
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                tokens.append(tok)
                out = decoder(input_ids=tok, past_key_values=cache, use_cache=True)
        return torch.cat(tokens, 1)

    together = decode(ids, NAMES)
    if native.load() is not None:
        # 2 layers x 4 projections, prefill + 4 steps; every projection is wrapped, so
        # every native product of a block is an adapted layer's base product
        assert calls["lora_delta"] >= 2 * 4 * 5, calls
        assert calls["gemv"] >= 2 * 4 * 5, calls
    for i, name in enumerate(NAMES):
        if name == BASE:
            model.disable_adapters()
        else:
            model.set_adapter(name)
        alone = decode(ids[i : i + 1], [BASE if name == BASE else name])
        model.enable_adapters()
        assert together[i].tolist() == alone[0].tolist(), (i, name)


def test_serve_adapter_helpers(tmp_path, tiny_config):
    from gpt2kit.serve.adapters import (
        AdapterSpecError,
        adapter_for,
        load_adapters,
        model_ids,
        parse_adapter_args,
        rows_context,
    )

    specs = parse_adapter_args(["a=" + str(tmp_path / "a"), "b=" + str(tmp_path / "b")])
    for bad in (["a"], ["=x"], ["a=x", "a=y"], ["__base__=x"]):
        with pytest.raises(AdapterSpecError):
            parse_adapter_args(bad)
    source = _two_adapters(tiny_config)
    for name in ("a", "b"):
        source.set_adapter(name)
        source.save_pretrained(tmp_path / name)
    model = source.unload()
    ids = _ids(4, 8)
    plain = model(ids).logits
    with rows_context(model, ["x"] * 4):  # (no adapters: as is)
        torch.testing.assert_close(model(ids).logits, plain, atol=0, rtol=0)
    names = load_adapters(model, specs, base_name="gpt2")
    assert model_ids("gpt2", names) == ["gpt2", "a", "b"]
    rows = [adapter_for(m, "gpt2", names) for m in ("a", "gpt2", "b", None)]
    assert rows == ["a", BASE, "b", BASE]
    with pytest.raises(AdapterSpecError, match="use one of gpt2, a, b"):
        adapter_for("c", "gpt2", names)
    with rows_context(model, rows):
        mixed = model(ids).logits
    torch.testing.assert_close(mixed[1], plain[1], atol=TOL, rtol=0)
    torch.testing.assert_close(mixed[0:1], _alone(model, "a", ids[0:1]).logits, atol=TOL, rtol=0)


@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_trained_biases_travel_with_the_adapter(tmp_path, tiny_config, bias):
    """bias="all" / "lora_only": the biases train and are saved; peft reads them back."""
    _, base = make_hf_twin(tiny_config(), tmp_path / "base")
    model = GPT2LMHeadModel.from_pretrained(base)
    model.add_adapter(LoraConfig(r=2, target_modules=["c_attn", "c_fc"], bias=bias))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and n.endswith("bias")]
    assert trainable and (bias == "all") == any("ln_" in n for n in trainable)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    model.save_pretrained(tmp_path / "a")
    pm = peft.PeftModel.from_pretrained(_hf_base(base), tmp_path / "a").eval()
    ids = _ids()
    torch.testing.assert_close(model(ids).logits, pm(ids).logits, atol=TOL, rtol=0)
    again = GPT2LMHeadModel.from_pretrained(tmp_path / "a")
    torch.testing.assert_close(again(ids).logits, model(ids).logits, atol=TOL, rtol=0)


def test_mixed_batch_of_classifier_heads(tiny_config):
    """Rows of different adapters each get their own head copy (`modules_to_save`)."""
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(tiny_config(num_labels=3, pad_token_id=98)).eval()
    for name in ("a", "b"):
        model.add_adapter(
            LoraConfig(
                r=2, target_modules=["c_attn"], modules_to_save=["score"], init_lora_weights=False
            ),
            name,
        )
        with torch.no_grad():
            model.score.modules_to_save[name].weight.add_(torch.randn(3, 32))
    model.eval()
    ids = _ids(4, 8)
    mask = torch.ones_like(ids)
    with mixed_batch(NAMES):
        mixed = model(input_ids=ids, attention_mask=mask).logits
    for i, name in enumerate(NAMES):
        alone = _alone(model, name, input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1]).logits
        torch.testing.assert_close(mixed[i : i + 1], alone, atol=TOL, rtol=0)
