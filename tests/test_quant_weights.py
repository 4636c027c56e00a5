"""What a quantized model does where fp32 code reads `.weight` (docs/quantization.md).

A quantized LM head (`QuantizedLinear`) and a tied token embedding (`QuantizedEmbedding`)
have integer buffers, no float `.weight`. Every public method that touches the weights
either works on a quantized model or raises an error naming the operation and the fix:

- works: `resize_token_embeddings` (kept rows keep their integers; new rows quantized: the
  same bytes as resizing the fp32 model and then quantizing), `get_output_embeddings` (the
  quantized head), `tie_weights` (already tied), `num_parameters(exclude_embeddings=True)`,
  `save_pretrained` / `push_to_hub` (after a resize too), `.to(dtype)` / `.half()` /
  `.bfloat16()` (activations follow, scales stay fp32), static-cache generation;
- clear errors: reading `.weight` (an AttributeError, so `hasattr` stays False),
  `set_input_embeddings` on a tied quantized model.
"""

from __future__ import annotations

import pytest
import torch

from gpt2kit import GPT2Config, GPT2LMHeadModel
from gpt2kit.quantization import (
    QuantizationConfig,
    QuantizedEmbedding,
    QuantizedLinear,
    quantize_model,
)

METHODS = ["int8", "int4"]
CONFIG = {"int8": QuantizationConfig(bits=8), "int4": QuantizationConfig(bits=4, group_size=32)}
IDS = torch.tensor([[1, 5, 9, 2, 7]])


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def folder(request, tmp_path_factory):
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=64, n_layer=2, n_head=2, n_positions=64, vocab_size=100,
        tie_word_embeddings=request.param,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("fp32")
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def load(folder, method, **kw) -> GPT2LMHeadModel:
    return GPT2LMHeadModel.from_pretrained(folder, quantization=method, **kw)


def logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("method", METHODS)
def test_weight_reads_raise_a_clear_attribute_error(folder, method):
    model = load(folder, method)
    head = model.get_output_embeddings()
    assert isinstance(head, QuantizedLinear)  # (not None: the model has an LM head)
    with pytest.raises(AttributeError, match=r"no float `\.weight`.*dequantize\(\).*fp32 model"):
        head.weight  # noqa: B018
    assert not hasattr(head, "weight")
    embedding = model.get_input_embeddings()
    if isinstance(embedding, QuantizedEmbedding):
        with pytest.raises(AttributeError, match=r"tied embeddings.*lm_head.dequantize\(\)"):
            embedding.weight  # noqa: B018
        assert not hasattr(embedding, "weight")
    else:  # untied: the embedding stays float
        assert embedding.weight.dtype == torch.float32
    full = head.dequantize()  # (the documented way to the float matrix)
    assert full.shape == (100, 64) and full.dtype == torch.float32


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("new", [130, 77])
def test_resize_equals_resizing_fp32_then_quantizing(folder, method, new):
    fp32 = GPT2LMHeadModel.from_pretrained(folder)
    torch.manual_seed(3)
    fp32.resize_token_embeddings(new, mean_resizing=False)
    expected = quantize_model(fp32, CONFIG[method])
    model = load(folder, method)
    before = logits(model)
    torch.manual_seed(3)  # (the same draw of the new rows)
    returned = model.resize_token_embeddings(new, mean_resizing=False)
    assert returned is model.get_input_embeddings()
    assert model.config.vocab_size == new and returned.num_embeddings == new
    head, ref = model.lm_head, expected.lm_head
    assert head.out_features == new and head.qweight.shape[0] == new
    assert torch.equal(head.qweight, ref.qweight)
    assert torch.equal(head.weight_scale, ref.weight_scale)
    if not isinstance(returned, QuantizedEmbedding):
        assert torch.equal(returned.weight, expected.get_input_embeddings().weight)
    after = logits(model)
    keep = min(new, 100)
    assert after.shape[-1] == new
    assert torch.allclose(after[..., :keep], before[..., :keep], atol=1e-6)
    assert torch.allclose(after, logits(expected), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_resize_mean_and_multiple_then_generate_save_and_reload(folder, method, tmp_path):
    model = load(folder, method)
    model.generate(IDS, max_new_tokens=3, do_sample=False)  # (decode plans built pre-resize)
    model.resize_token_embeddings(101, pad_to_multiple_of=8)  # -> 104, mean-resized rows
    assert model.config.vocab_size == 104 and model.lm_head.out_features == 104
    ids = torch.tensor([[103, 101, 3]])  # new tokens embed (tied: the head's new rows)
    out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert out.shape == (1, 9)
    model.save_pretrained(tmp_path / "resized")
    again = GPT2LMHeadModel.from_pretrained(tmp_path / "resized")
    assert again.quantization_config.method == method
    assert torch.equal(again.lm_head.qweight, model.lm_head.qweight)
    assert torch.allclose(logits(again, ids), logits(model, ids), atol=1e-6)
    assert torch.equal(again.generate(ids, max_new_tokens=6, do_sample=False), out)


@pytest.mark.parametrize("method", METHODS)
def test_set_input_embeddings_and_tie_weights(folder, method):
    model = load(folder, method)
    before = logits(model)
    model.tie_weights()  # a tied quantized model is already tied: no change
    assert torch.equal(logits(model), before)
    if isinstance(model.get_input_embeddings(), QuantizedEmbedding):
        with pytest.raises(ValueError, match=f"set_input_embeddings on an {method}-quantized"):
            model.set_input_embeddings(torch.nn.Embedding(100, 64))
        assert torch.equal(logits(model), before)  # (nothing changed)
    else:
        replacement = torch.nn.Embedding(100, 64)
        model.set_input_embeddings(replacement)
        assert model.get_input_embeddings() is replacement


@pytest.mark.parametrize("method", METHODS)
def test_num_parameters_excluding_embeddings(folder, method):
    fp32 = GPT2LMHeadModel.from_pretrained(folder)
    model = load(folder, method)
    embeddings = 100 * 64 + 64 * 64
    # (the quantized model's linear weights are buffers, not parameters)
    assert model.num_parameters() - model.num_parameters(exclude_embeddings=True) == (
        embeddings if not fp32.config.tie_word_embeddings else 64 * 64
    )
    assert fp32.num_parameters() - fp32.num_parameters(exclude_embeddings=True) == embeddings


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cast", ["to", "half", "bfloat16"])
def test_float_casts_move_activations_and_keep_scales_fp32(folder, method, cast):
    model = load(folder, method)
    reference = logits(model)
    dtype = torch.float16 if cast == "half" else torch.bfloat16
    model = model.to(dtype) if cast == "to" else getattr(model, cast)()
    assert model.lm_head.weight_scale.dtype == torch.float32
    assert all(
        m.weight_scale.dtype == torch.float32
        for m in model.modules()
        if isinstance(m, QuantizedLinear)
    )
    out = logits(model)
    assert out.dtype == dtype
    assert torch.allclose(out.float(), reference, atol=0.05, rtol=0.05)
    assert model.generate(IDS, max_new_tokens=4, do_sample=False).shape == (1, 9)
    back = model.float()
    assert torch.allclose(logits(back), reference, atol=1e-2)


@pytest.mark.parametrize("method", METHODS)
def test_static_cache_generation_equals_dynamic(folder, method):
    model = load(folder, method)
    dynamic = model.generate(IDS, max_new_tokens=8, do_sample=False)
    for options in ({"disable_compile": True}, {"compile_config": {"backend": "eager"}}):
        static = model.generate(
            IDS, max_new_tokens=8, do_sample=False, cache_implementation="static", **options
        )
        assert torch.equal(static, dynamic), options


def test_push_to_hub_uploads_the_quantized_folder(folder, monkeypatch):
    import gpt2kit.nn.base as base

    pushed = {}

    def fake_push(path, repo_id, **kw):
        pushed["model"] = GPT2LMHeadModel.from_pretrained(path)
        return "commit"

    monkeypatch.setattr(base, "push_folder", fake_push)
    model = load(folder, "int8")
    assert model.push_to_hub("me/tiny-int8") == "commit"
    assert pushed["model"].quantization_config.method == "int8"
    assert torch.equal(pushed["model"].lm_head.qweight, model.lm_head.qweight)


def test_evaluate_cli_quantize(tmp_path):
    """`gpt2kit evaluate --quantize` scores the quantized model on the same windows."""
    import json

    from gpt2kit.cli.train import main
    from gpt2kit.pipelines import default_model_path

    text = tmp_path / "eval.txt"
    text.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n" * 6)
    scores = {}
    for method in (None, "int8", "int4"):
        out = tmp_path / f"{method}.json"
        argv = ["evaluate", "--task", "causal-lm", "--model", str(default_model_path())]
        argv += ["--eval-file", str(text), "--block-size", "64", "--json", str(out)]
        assert main(argv + (["--quantize", method] if method else [])) == 0
        scores[method] = json.loads(out.read_text())
    base = scores[None]["perplexity"]
    assert all(s["scored_tokens"] == scores[None]["scored_tokens"] for s in scores.values())
    assert scores["int8"]["perplexity"] != base  # (the quantized weights were used)
    assert abs(scores["int8"]["perplexity"] / base - 1) < 0.02
    assert abs(scores["int4"]["perplexity"] / base - 1) < 0.1
    with pytest.raises(SystemExit):  # (argparse: an unknown method is refused)
        main(["evaluate", "--task", "causal-lm", "--model", "x", "--quantize", "int3"])
