"""The decoding seam (`gpt2kit.decode`): around `generate` the model stays a plain module.

No parameter is rebound to the decoder's memory (a saved parameter holds its own bytes),
nothing of the decoder stays on the modules after a call (also when it raises), and
weights changed between calls are the ones decoded with.
"""

from __future__ import annotations

import io

import pytest
import torch

from gpt2kit import GPT2LMHeadModel, decode, generate
from gpt2kit.decode.weights import projection_weights
from gpt2kit.nn.base import GPT2PreTrainedModel
from harness import tiny_config


def _saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


@pytest.mark.parametrize("rows", [1, 8, 40])  # the arena, the kernel on it, packed copies
def test_after_generate_a_saved_parameter_holds_only_its_own_bytes(rows):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(n_layer=4, n_embd=256, vocab_size=1000)).eval()
    weight = model.transformer.h[0].attn.c_attn.weight
    before = _saved_bytes(weight)
    state_before = _saved_bytes(model.state_dict())
    generate(model, torch.randint(0, 1000, (rows, 5)), max_new_tokens=3, eos_token_id=None)
    assert decode.held_bytes(model) > 0  # (the decoder did keep copies, beside the model)
    assert _saved_bytes(weight) == before < weight.numel() * weight.element_size() + 4096
    assert _saved_bytes(model.state_dict()) == state_before
    for name, tensor in model.state_dict().items():
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size(), name


def test_the_arena_costs_one_copy_of_the_projection_weights():
    model = GPT2LMHeadModel(tiny_config()).eval()
    generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=2, eos_token_id=None)
    weights = projection_weights(model)  # every projection and the tied LM head, once
    assert decode.held_bytes(model) == sum(w.numel() * w.element_size() for w in weights)


def test_models_carry_no_decoding_state():
    assert GPT2PreTrainedModel.train is torch.nn.Module.train
    assert not hasattr(GPT2PreTrainedModel, "use_decode_layout")
    model = GPT2LMHeadModel(tiny_config()).eval()
    ids = torch.tensor([[1, 2, 3]])
    for batch in (1, 2, 40):
        generate(model, ids.repeat(batch, 1), max_new_tokens=3, eos_token_id=None)
        for module in model.modules():
            assert "forward" not in module.__dict__  # nothing stands in after the call
            assert not any(k.startswith(("_decode", "packed", "native")) for k in module.__dict__)


def test_a_failing_call_restores_the_modules():
    model = GPT2LMHeadModel(tiny_config()).eval()

    def fail(module, args, output):
        raise RuntimeError("boom")

    handle = model.transformer.h[1].register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        generate(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), max_new_tokens=2)
    handle.remove()
    assert all("forward" not in m.__dict__ for m in model.modules())
    generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=2)  # and decoding still works


@pytest.mark.parametrize("rows", [1, 8, 40])
def test_weights_changed_between_calls_are_read(rows):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(initializer_range=0.3)).eval()
    ids = torch.randint(0, 98, (rows, 4))

    def both():
        fast = generate(model, ids, max_new_tokens=6, eos_token_id=None)
        with decode.disabled():
            assert torch.equal(generate(model, ids, max_new_tokens=6, eos_token_id=None), fast)
        return fast

    first = both()
    other = GPT2LMHeadModel(tiny_config(initializer_range=0.3))
    model.load_state_dict(other.state_dict())  # in place: same storage, new values
    loaded = both()
    assert not torch.equal(first, loaded)
    fc = model.transformer.h[0].mlp.c_fc
    fc.weight = torch.nn.Parameter(torch.randn_like(fc.weight))  # a new parameter
    both()
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)  # the tied head (the token embedding), in place
    both()
