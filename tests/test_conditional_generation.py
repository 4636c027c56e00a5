"""GPT2ForConditionalGeneration: transformers parity, checkpoints, encoder sharing, generation, learning."""

from __future__ import annotations

import random

import pytest
import torch

from gpt2kit.models.backbone import GPT2Model
from gpt2kit.models.conditional_generation import GPT2ForConditionalGeneration
from gpt2kit.tasks.seq2seq import EncoderDecoderCollator, pad_sequences
from harness import ModelCase, check_model_case, exact_match, tiny_config, train_reverser

START, EOS = 0, 1


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads; on a busy machine OpenMP threads spin-wait.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_config(**overrides):
    base = dict(vocab_size=16, bos_token_id=START, eos_token_id=EOS, n_positions=16)
    return tiny_config(**{**base, **overrides})


def build(seed: int = 0, **overrides) -> GPT2ForConditionalGeneration:
    torch.manual_seed(seed)
    return GPT2ForConditionalGeneration(small_config(**overrides)).eval()


def greedy_reference(model, source: list[int], steps: int) -> list[int]:
    """Greedy decoding without any cache: encoder and decoder run again at every step."""
    new: list[int] = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(
                torch.tensor([[START, *new]]), encoder_input_ids=torch.tensor([source])
            ).logits
        nxt = int(logits[0, -1].argmax())
        if nxt == EOS:
            break
        new.append(nxt)
    return new


# -- parity with transformers -----------------------------------------------------------------------
def test_decoder_equals_transformers_cross_attention_lm(hf_twin):
    ref, folder = hf_twin(small_config(add_cross_attention=True), "GPT2LMHeadModel")
    model, report = GPT2ForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert report.new_keys == []
    g = torch.Generator().manual_seed(0)
    enc = torch.randn(2, 7, 32, generator=g)
    enc_mask = torch.ones(2, 7, dtype=torch.long)
    enc_mask[1, 5:] = 0
    ids = torch.randint(2, 16, (2, 6), generator=g)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0  # left padding on the decoder side
    # transformers does not derive positions from the mask; give both the same positions.
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = dict(
        attention_mask=mask,
        position_ids=pos,
        encoder_hidden_states=enc,
        encoder_attention_mask=enc_mask,
    )
    with torch.no_grad():
        want = ref(ids, **kwargs).logits
        got = model(ids, **kwargs).logits
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1, 2:], want[1, 2:], atol=1e-5, rtol=0)  # real tokens


def test_saved_decoder_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = build(share_encoder_decoder=False)
    model.save_pretrained(tmp_path / "ours")
    ref = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path / "ours"
    ).eval()  # ignores encoder.*
    assert ref.config.add_cross_attention
    enc = torch.randn(1, 5, 32)
    ids = torch.tensor([[START, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, encoder_hidden_states=enc).logits,
            ref(ids, encoder_hidden_states=enc).logits,
            atol=1e-5,
            rtol=0,
        )


@pytest.mark.parametrize("share", [True, False])
def test_plain_gpt2_checkpoint_initializes_encoder_and_decoder(hf_twin, share, caplog):
    ref, folder = hf_twin(small_config(), "GPT2LMHeadModel")  # no cross-attention
    with caplog.at_level("WARNING", logger="gpt2kit"):
        model, report = GPT2ForConditionalGeneration.from_pretrained(
            folder, output_loading_info=True, share_encoder_decoder=share
        )
    # the log names only the really new weights, not the encoder copied from the backbone
    assert "crossattention" in caplog.text and "encoder." not in caplog.text
    assert report.new_keys and all(
        ".crossattention." in k or ".ln_cross_attn." in k for k in report.new_keys
    )
    assert len(report.new_keys) == 2 * 8  # per layer: q_attn, c_attn, c_proj, ln_cross_attn (w, b)
    plain = GPT2Model.from_pretrained(folder)
    src = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode(src), plain(src).last_hidden_state, atol=1e-6, rtol=0
        )
    assert hasattr(model, "encoder") != share


# -- encoders ---------------------------------------------------------------------------------------
def test_shared_encoder_is_the_backbone_and_separate_encoder_is_saved(tmp_path):
    shared = build()
    assert not hasattr(shared, "encoder")
    separate = build(share_encoder_decoder=False)
    keys = separate.state_dict().keys()
    assert any(k.startswith("encoder.h.0.") for k in keys)
    assert not any(".crossattention." in k for k in keys if k.startswith("encoder."))
    separate.save_pretrained(tmp_path / "m")
    loaded = GPT2ForConditionalGeneration.from_pretrained(tmp_path / "m")
    assert not loaded.shared_encoder
    src = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(src), separate.encode(src), atol=0, rtol=0)


def test_states_from_another_encoder_and_projection():
    model = build(encoder_hidden_size=48)
    ids = torch.tensor([[START, 5, 6]])
    out = model(ids, encoder_hidden_states=torch.randn(1, 4, 48))
    assert out.logits.shape == (1, 3, 16) and out.encoder_last_hidden_state.shape == (1, 4, 32)
    assert model(ids, encoder_hidden_states=torch.randn(1, 4, 32)).logits.shape == (1, 3, 16)
    with pytest.raises(ValueError, match="encoder_hidden_size=24"):
        model(ids, encoder_hidden_states=torch.randn(1, 4, 24))
    with pytest.raises(ValueError, match="encoder_input_ids"):
        model(ids)
    got = model.generate(
        encoder_hidden_states=torch.randn(2, 4, 48), max_new_tokens=3, eos_token_id=None
    )
    assert [len(t) for t in got] == [3, 3]


# -- generation -------------------------------------------------------------------------------------
def test_generate_matches_uncached_greedy_and_padding():
    model = build()
    sources = [[5, 6, 7, 8, 9], [10, 11], [3, 4, 5]]
    got = model.generate(sources, max_new_tokens=6)
    assert got == [greedy_reference(model, s, 6) for s in sources]
    assert model.generate(sources[1], max_new_tokens=6) == got[1]
    ids, mask = pad_sequences(sources, 0, side="left")  # left-padded sources too
    assert model.generate(ids, attention_mask=mask, max_new_tokens=6) == got


def test_encoder_and_cross_projection_run_once_across_steps_and_beams():
    model = build(share_encoder_decoder=False)
    calls = {"encoder": 0, "cross_kv": 0}
    model.encoder.register_forward_hook(
        lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1)
    )
    model.transformer.h[0].crossattention.c_attn.register_forward_hook(
        lambda *a: calls.__setitem__("cross_kv", calls["cross_kv"] + 1)
    )
    out = model.generate([[5, 6, 7], [8, 9]], max_new_tokens=5, num_beams=3, eos_token_id=None)
    assert len(out) == 2 and all(len(t) == 5 for t in out)
    assert calls == {"encoder": 1, "cross_kv": 1}


def test_labels_give_shifted_decoder_loss():
    model = build()
    batch = EncoderDecoderCollator(decoder_start_token_id=START, eos_token_id=EOS)(
        [([5, 6], [7, 8]), ([9], [10])]
    )
    with torch.no_grad():
        out = model(**batch)
        logits = out.logits
    want = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 16), batch["labels"][:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, want)


# -- shared harness ---------------------------------------------------------------------------------
def enc_dec_batch(config, seed):
    rng = random.Random(seed)
    pairs = [
        ([rng.randrange(3, 15) for _ in range(n)], [rng.randrange(3, 15) for _ in range(m)])
        for n, m in [(4, 3), (2, 5)]
    ]
    return EncoderDecoderCollator(decoder_start_token_id=START, eos_token_id=EOS)(pairs)


def external_states_batch(config, seed):
    batch = enc_dec_batch(config, seed)
    del batch["encoder_input_ids"]
    g = torch.Generator().manual_seed(seed)
    batch["encoder_hidden_states"] = torch.randn(2, 4, 48, generator=g)
    return batch


BASE = {"vocab_size": 16, "bos_token_id": START, "eos_token_id": EOS, "add_cross_attention": True}
CASES = [
    ModelCase(
        GPT2ForConditionalGeneration, BASE, enc_dec_batch, {"logits": (2, 7, 16)}, name="shared"
    ),
    ModelCase(
        GPT2ForConditionalGeneration,
        {**BASE, "share_encoder_decoder": False},
        enc_dec_batch,
        {"logits": (2, 7, 16), "encoder_last_hidden_state": (2, 4, 32)},
        name="separate",
    ),
    ModelCase(
        GPT2ForConditionalGeneration,
        {**BASE, "encoder_hidden_size": 48},
        external_states_batch,
        {"logits": (2, 7, 16)},
        name="external-encoder",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_harness(case, tmp_path):
    check_model_case(case, tmp_path)


# -- it learns --------------------------------------------------------------------------------------
def test_learns_to_reverse_held_out_sequences():
    torch.manual_seed(0)
    model = GPT2ForConditionalGeneration(
        small_config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    )
    collate = EncoderDecoderCollator(decoder_start_token_id=START, eos_token_id=EOS)
    model, test = train_reverser(model, collate)
    exact = exact_match(model.generate([s for s, _ in test], max_new_tokens=7), test)
    assert exact >= 0.95, f"held-out exact match {exact:.3f}"
    beams = model.generate([s for s, _ in test[:50]], max_new_tokens=7, num_beams=3)
    assert exact_match(beams, test[:50]) >= 0.95
