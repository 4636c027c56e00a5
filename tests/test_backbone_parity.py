"""The backbone and LM head against `transformers` twins: fp32, tolerance 1e-5.

Each twin is built at random by `transformers`, saved with its `save_pretrained`, and loaded
by gpt2kit through the production loader, so these tests also cover the key mapping and the
Conv1D transpose. Attention weights are compared against the eager implementation.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from conftest import make_hf_twin
from gpt2kit.checkpoint import _CONV1D
from gpt2kit.config import ACTIVATIONS
from gpt2kit.models.lm import GPT2LMHeadModel
from gpt2kit.nn.backbone import GPT2Model
from gpt2kit.nn.cache import KVCache
from harness import tiny_config

ATOL = 1e-5


def close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = ATOL, what: str = "") -> None:
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=1e-4, msg=lambda m: f"{what}: {m}")


def pair(tmp_path, config, hf_class="GPT2LMHeadModel", **kwargs):
    """(transformers model, gpt2kit model) with identical weights, both in eval mode."""
    hf, folder = make_hf_twin(config, tmp_path / f"twin-{hf_class}", hf_class, **kwargs)
    ours_cls = GPT2Model if hf_class == "GPT2Model" else GPT2LMHeadModel
    return hf, ours_cls.from_pretrained(folder)


@pytest.fixture(scope="module")
def base_pair(tmp_path_factory):
    """The default tiny config's twins, built once for the tests that only read them."""
    return pair(tmp_path_factory.mktemp("base"), tiny_config())


def random_ids(config, batch=2, seq=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, seq), generator=g)


def assert_full_parity(hf, ours, ids, **kwargs):
    """logits, loss, every hidden state and every attention map agree."""
    with torch.no_grad():
        theirs = hf(ids, labels=ids, output_hidden_states=True, output_attentions=True, **kwargs)
        mine = ours(ids, labels=ids, output_hidden_states=True, output_attentions=True, **kwargs)
    close(mine.logits, theirs.logits, what="logits")
    close(mine.loss, theirs.loss, what="loss")
    assert len(mine.hidden_states) == len(theirs.hidden_states) == ours.config.n_layer + 1
    for i, (a, b) in enumerate(zip(mine.hidden_states, theirs.hidden_states)):
        close(a, b, what=f"hidden_states[{i}]")
    assert len(mine.attentions) == len(theirs.attentions) == ours.config.n_layer
    for i, (a, b) in enumerate(zip(mine.attentions, theirs.attentions)):
        close(a, b, what=f"attentions[{i}]")
    return mine, theirs


CONFIGS = {
    "base": {},
    "1layer-2heads": {"n_layer": 1, "n_head": 2},
    "3layers-48wide-6heads": {"n_layer": 3, "n_embd": 48, "n_head": 6},
    "n_inner": {"n_inner": 20},
    "inverse_layer_idx": {"scale_attn_by_inverse_layer_idx": True, "n_layer": 3},
    "reorder_and_upcast": {"reorder_and_upcast_attn": True},
    "no_scale": {"scale_attn_weights": False},
    "untied": {"tie_word_embeddings": False},
    "eps": {"layer_norm_epsilon": 1e-3},
}


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_parity_configs(tmp_path, overrides):
    config = tiny_config(**overrides)
    hf, ours = pair(tmp_path, config)
    assert_full_parity(hf, ours, random_ids(config))


HF_ACTIVATIONS = [a for a in ACTIVATIONS if a in transformers.activations.ACT2FN]


def test_every_activation_is_in_transformers():
    assert set(HF_ACTIVATIONS) == set(ACTIVATIONS), set(ACTIVATIONS) - set(HF_ACTIVATIONS)


@pytest.mark.parametrize("activation", HF_ACTIVATIONS)
def test_parity_activations(tmp_path, activation):
    config = tiny_config(activation_function=activation, n_layer=1)
    hf, ours = pair(tmp_path, config)
    with torch.no_grad():
        ids = random_ids(config)
        close(ours(ids).logits, hf(ids).logits, what=activation)


def test_parity_gpt2model(tmp_path):
    config = tiny_config()
    hf, ours = pair(tmp_path, config, "GPT2Model")
    ids = random_ids(config)
    with torch.no_grad():
        mine = ours(ids, output_hidden_states=True)
        theirs = hf(ids, output_hidden_states=True)
    close(mine.last_hidden_state, theirs.last_hidden_state)
    # transformers 5: n_layer + 1 states, the last one after ln_f (= last_hidden_state).
    close(mine.hidden_states[-1], theirs.last_hidden_state)
    for a, b in zip(mine.hidden_states, theirs.hidden_states):
        close(a, b)


def test_parity_cross_attention(tmp_path):
    config = tiny_config(add_cross_attention=True)
    hf, ours = pair(tmp_path, config)
    g = torch.Generator().manual_seed(1)
    enc = torch.randn(2, 5, config.n_embd, generator=g)
    enc_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    ids = random_ids(config)
    kwargs = dict(encoder_hidden_states=enc, encoder_attention_mask=enc_mask)
    with torch.no_grad():
        mine = ours(ids, labels=ids, output_attentions=True, **kwargs)
        theirs = hf(ids, labels=ids, output_attentions=True, **kwargs)
    close(mine.logits, theirs.logits, what="logits")
    close(mine.loss, theirs.loss, what="loss")
    for a, b in zip(mine.cross_attentions, theirs.cross_attentions):
        close(a, b, what="cross_attentions")
    # The masked encoder positions get no attention weight.
    assert float(mine.cross_attentions[0][1, :, :, 3:].abs().max()) == 0.0


def hf_grads(hf) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in hf.named_parameters()}


@pytest.mark.parametrize("overrides", [{}, {"add_cross_attention": True}], ids=["plain", "cross"])
def test_parity_gradients(tmp_path, overrides):
    config = tiny_config(**overrides)
    hf, ours = pair(tmp_path, config)
    ids = random_ids(config)
    kwargs = {}
    if config.add_cross_attention:
        kwargs["encoder_hidden_states"] = torch.randn(2, 5, config.n_embd)
    hf(ids, labels=ids, **kwargs).loss.backward()
    ours(ids, labels=ids, **kwargs).loss.backward()
    theirs = hf_grads(hf)
    checked = 0
    for name, param in ours.named_parameters():
        grad = theirs[name]
        if _CONV1D.search(name):  # Conv1D [in, out] vs our Linear [out, in]
            grad = grad.t()
        close(param.grad, grad, what=f"grad {name}")
        checked += 1
    assert checked == len(theirs)


def test_right_padding_equals_transformers_on_real_tokens(base_pair):
    config = tiny_config()
    hf, ours = base_pair
    ids = random_ids(config, batch=3, seq=9)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        theirs = hf(ids, attention_mask=mask).logits
    real = mask.bool()
    close(mine[real], theirs[real])


def test_left_padding_equals_unpadded_text(base_pair):
    config = tiny_config()
    hf, ours = base_pair
    text = random_ids(config, batch=1, seq=6)
    pads = 4
    padded = torch.cat([torch.full((1, pads), 7), text], dim=1)
    mask = torch.tensor([[0] * pads + [1] * 6])
    with torch.no_grad():
        alone = ours(text).logits[0]
        mine = ours(padded, attention_mask=mask).logits[0, pads:]
        # transformers derives positions from arange, not the mask: give them explicitly.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        theirs = hf(padded, attention_mask=mask, position_ids=positions).logits[0, pads:]
    close(mine, alone, what="left-padded vs alone")
    close(mine, theirs, what="left-padded vs transformers")


def test_token_type_ids_and_inputs_embeds(base_pair):
    config = tiny_config()
    hf, ours = base_pair
    ids = random_ids(config)
    types = random_ids(config, seed=3)
    with torch.no_grad():
        close(ours(ids, token_type_ids=types).logits, hf(ids, token_type_ids=types).logits)
        embeds = ours.transformer.wte(ids) * 1.5
        close(ours(inputs_embeds=embeds).logits, hf(inputs_embeds=embeds).logits)
        # inputs_embeds of the plain embedding equals passing the ids.
        close(ours(inputs_embeds=ours.transformer.wte(ids)).logits, ours(ids).logits)


# -- KV cache ------------------------------------------------------------------------------------
def decode_incrementally(model, ids, mask, chunks):
    """Feed `ids` in pieces of the given sizes through the cache; return the logits of all."""
    cache, start, pieces = None, 0, []
    for size in chunks:
        end = start + size
        out = model(
            ids[:, start:end],
            past_key_values=cache,
            attention_mask=mask[:, :end],
            use_cache=True,
        )
        cache = out.past_key_values
        pieces.append(out.logits)
        start = end
    assert start == ids.shape[1]
    return torch.cat(pieces, dim=1), cache


@pytest.mark.parametrize(
    "chunks", [[6, 1, 1, 1, 1], [1] * 10, [3, 4, 3]], ids=["prompt+1s", "1s", "chunks"]
)
@pytest.mark.parametrize("padding", ["none", "left"])
def test_cache_decoding_equals_full_forward(base_pair, chunks, padding):
    config = tiny_config()
    _, ours = base_pair
    ids = random_ids(config, batch=2, seq=10)
    mask = torch.ones_like(ids)
    if padding == "left":
        mask[1, :3] = 0
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        stepwise, cache = decode_incrementally(ours, ids, mask, chunks)
    real = mask.bool()
    close(stepwise[real], full[real], what=f"chunks {chunks}")
    assert cache.get_seq_length() == 10
    if padding == "left":  # and the padded row equals its text alone
        with torch.no_grad():
            alone = ours(ids[1:, 3:]).logits[0]
        close(stepwise[1, 3:], alone, what="left-padded decoding vs alone")


def test_cache_matches_transformers_keys_values(base_pair):
    config = tiny_config()
    hf, ours = base_pair
    ids = random_ids(config)
    with torch.no_grad():
        mine = ours(ids, use_cache=True).past_key_values.to_legacy()
        theirs = hf(ids, use_cache=True).cache
    for i, layer in enumerate(theirs.layers):
        close(mine[i][0], layer.keys, what=f"keys {i}")
        close(mine[i][1], layer.values, what=f"values {i}")


def test_plain_forward_builds_no_cache(tmp_path):
    model = GPT2LMHeadModel(tiny_config()).eval()
    assert model(random_ids(model.config)).past_key_values is None


def test_legacy_cache_round_trip():
    config = tiny_config()
    model = GPT2LMHeadModel(config).eval()
    ids = random_ids(config, seq=8)
    with torch.no_grad():
        cache = model(ids[:, :6], use_cache=True).past_key_values
        legacy = cache.to_legacy()
        assert len(legacy) == config.n_layer and legacy[0][0].shape == (2, 4, 6, 8)
        rebuilt = KVCache.from_legacy(legacy)
        assert rebuilt.get_seq_length() == 6
        for a, b in zip(rebuilt.to_legacy(), legacy):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
        via_tuple = model(ids[:, 6:], past_key_values=legacy).logits
        via_cache = model(ids[:, 6:], past_key_values=cache).logits
        full = model(ids).logits[:, 6:]
    close(via_tuple, full)
    close(via_cache, full)


def test_legacy_cache_with_cross_attention():
    config = tiny_config(add_cross_attention=True)
    model = GPT2LMHeadModel(config).eval()
    ids, enc = random_ids(config, seq=7), torch.randn(2, 5, config.n_embd)
    with torch.no_grad():
        cache = model(ids[:, :5], encoder_hidden_states=enc, use_cache=True).past_key_values
        legacy = cache.to_legacy()
        assert len(legacy[0]) == 4 and legacy[0][2].shape == (2, 4, 5, 8)
        step = model(ids[:, 5:], encoder_hidden_states=enc, past_key_values=legacy).logits
        full = model(ids, encoder_hidden_states=enc).logits[:, 5:]
    close(step, full)


def test_too_long_input_raises_clear_error():
    config = tiny_config(n_positions=16)
    model = GPT2Model(config).eval()
    with pytest.raises(ValueError, match="n_positions"):
        model(torch.zeros(1, 17, dtype=torch.long))
    cache = model(torch.zeros(1, 10, dtype=torch.long), use_cache=True).past_key_values
    with pytest.raises(ValueError, match=r"10 cached \+ 7 new"):
        model(torch.zeros(1, 7, dtype=torch.long), past_key_values=cache)


def test_gradient_checkpointing_same_gradients():
    config = tiny_config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).train()
    ids = random_ids(config)
    model(ids, labels=ids).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(ids, labels=ids).loss.backward()
    for name, param in model.named_parameters():
        close(param.grad, plain[name], atol=1e-6, what=name)


def test_dropout_active_in_train_mode_only():
    config = tiny_config(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    model = GPT2LMHeadModel(config)
    ids = random_ids(config)
    model.train()
    a, b = model(ids).logits, model(ids).logits
    assert (a - b).abs().max() > 1e-3, "train-mode forwards are equal: dropout is not applied"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model(ids).logits)


@pytest.mark.parametrize(
    "ids,message",
    [
        (torch.tensor([[1, 100]]), r"input_ids must be in \[0, 100\)"),
        (torch.tensor([1, 2]), r"input_ids must be \[batch, tokens\]"),
        (torch.tensor([[1.0, 2.0]]), "integer token ids, got dtype torch.float32"),
        (torch.tensor([[True]]), "integer token ids, got dtype torch.bool"),
    ],
)
def test_bad_input_ids_name_the_problem(ids, message):
    model = GPT2Model(tiny_config()).eval()
    with pytest.raises(ValueError, match=message):
        model(ids)
