"""GPT2ForConditionalGeneration: its decoder, checkpoints, encoder sharing, generation, learning.

Parity with transformers' EncoderDecoderModel itself is tests/test_compat_encdec.py."""

from __future__ import annotations

import random

import pytest
import torch

from gpt2kit.models.conditional_generation import GPT2ForConditionalGeneration
from gpt2kit.nn.backbone import GPT2Model
from gpt2kit.tasks.seq2seq import EncoderDecoderCollator, pad_sequences
from harness import ModelCase, check_model_case, exact_match, tiny_config, train_reverser

START, EOS, PAD = 2, 1, 0


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads; on a busy machine OpenMP threads spin-wait.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_config(**overrides):
    base = dict(
        vocab_size=16,
        bos_token_id=START,
        eos_token_id=EOS,
        n_positions=16,
        decoder_start_token_id=START,
        pad_token_id=PAD,
    )
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
                input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([[START, *new]])
            ).logits
        nxt = int(logits[0, -1].argmax())
        if nxt == EOS:
            break
        new.append(nxt)
    return new


# -- the decoder is transformers' cross-attention GPT2LMHeadModel ----------------------------------
def test_decoder_equals_transformers_cross_attention_lm(hf_twin):
    ref, folder = hf_twin(small_config(add_cross_attention=True), "GPT2LMHeadModel")
    model, report = GPT2ForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert report.new_keys == []  # the encoder starts as the decoder backbone's copy
    g = torch.Generator().manual_seed(0)
    enc = torch.randn(2, 7, 32, generator=g)
    enc_mask = torch.ones(2, 7, dtype=torch.long)
    enc_mask[1, 5:] = 0
    ids = torch.randint(2, 16, (2, 6), generator=g)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0  # right padding on the decoder side
    with torch.no_grad():
        want = ref(
            ids, attention_mask=mask, encoder_hidden_states=enc, encoder_attention_mask=enc_mask
        ).logits
        got = model(
            attention_mask=enc_mask,
            encoder_outputs=(enc,),
            decoder_input_ids=ids,
            decoder_attention_mask=mask,
        ).logits
        sub = model.decoder(
            ids, attention_mask=mask, encoder_hidden_states=enc, encoder_attention_mask=enc_mask
        ).logits
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-5, rtol=0)
    torch.testing.assert_close(sub, got, atol=0, rtol=0)


def test_former_gpt2kit_layout_loads(tmp_path):
    """A folder of the former layout (`transformer.*` with cross-attention, `encoder_proj`)."""
    from safetensors.torch import save_file

    from gpt2kit.checkpoint import to_hf_state_dict

    model = build(encoder_hidden_size=48)
    state = to_hf_state_dict(model)
    old = {}
    for key, value in state.items():
        if key.startswith("decoder."):
            old[key[len("decoder.") :]] = value
        elif key.startswith("enc_to_dec_proj."):
            old["encoder_proj." + key[len("enc_to_dec_proj.") :]] = value
    folder = tmp_path / "old"
    folder.mkdir()
    save_file(old, str(folder / "model.safetensors"))
    cfg = small_config(encoder_hidden_size=48, add_cross_attention=True)
    cfg.architectures = ["GPT2ForConditionalGeneration"]
    cfg.save_pretrained(folder)
    loaded, report = GPT2ForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert report.new_keys == []
    src, dec = torch.tensor([[5, 6, 7]]), torch.tensor([[START, 4, 5]])
    with torch.no_grad():
        # (the former layout shared its encoder: the backbone's weights encode)
        plain = loaded.decoder.transformer(src).last_hidden_state
        torch.testing.assert_close(loaded.encoder(src).last_hidden_state, plain, atol=0, rtol=0)
        states = torch.randn(1, 4, 48)
        torch.testing.assert_close(
            loaded(encoder_outputs=(states,), decoder_input_ids=dec).logits,
            model(encoder_outputs=(states,), decoder_input_ids=dec).logits,
            atol=0,
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
            model.encode(src).last_hidden_state, plain(src).last_hidden_state, atol=1e-6, rtol=0
        )
    same = model.encoder.wte.weight is model.decoder.transformer.wte.weight
    assert same == share


# -- encoders ---------------------------------------------------------------------------------------
def test_shared_encoder_is_tied_and_saved_as_two_equal_copies(tmp_path):
    shared = build(share_encoder_decoder=True)
    assert (
        shared.encoder.h[0].attn.c_attn.weight is shared.decoder.transformer.h[0].attn.c_attn.weight
    )
    n_separate = build().num_parameters()
    assert shared.num_parameters() < n_separate  # one copy trained
    shared.save_pretrained(tmp_path / "m")
    loaded = GPT2ForConditionalGeneration.from_pretrained(tmp_path / "m")
    assert loaded.shared_encoder
    assert loaded.encoder.wte.weight is loaded.decoder.transformer.wte.weight
    src = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.encode(src).last_hidden_state,
            shared.encode(src).last_hidden_state,
            atol=0,
            rtol=0,
        )
    separate = build()
    separate.save_pretrained(tmp_path / "s")
    with pytest.raises(Exception, match="share_encoder_decoder=False"):
        GPT2ForConditionalGeneration.from_pretrained(tmp_path / "s", share_encoder_decoder=True)


def test_states_from_another_encoder_and_projection():
    model = build(encoder_hidden_size=48)
    dec = torch.tensor([[START, 5, 6]])
    out = model(encoder_outputs=(torch.randn(1, 4, 48),), decoder_input_ids=dec)
    assert out.logits.shape == (1, 3, 16) and out.encoder_last_hidden_state.shape == (1, 4, 48)
    same_width = model(encoder_outputs=(torch.randn(1, 4, 32),), decoder_input_ids=dec)
    assert same_width.logits.shape == (1, 3, 16)
    with pytest.raises(ValueError, match="encoder_hidden_size=24"):
        model(encoder_outputs=(torch.randn(1, 4, 24),), decoder_input_ids=dec)
    with pytest.raises(ValueError, match="input_ids"):
        model(decoder_input_ids=dec)
    got = model.generate_target(
        encoder_outputs=(torch.randn(2, 4, 48),), max_new_tokens=3, eos_token_id=None
    )
    assert [len(t) for t in got] == [3, 3]


# -- generation -------------------------------------------------------------------------------------
def test_generate_matches_uncached_greedy_and_padding():
    model = build()
    sources = [[5, 6, 7, 8, 9], [10, 11], [3, 4, 5]]
    got = model.generate_target(sources, max_new_tokens=6)
    assert got == [greedy_reference(model, s, 6) for s in sources]
    assert model.generate_target(sources[1], max_new_tokens=6) == got[1]
    ids, mask = pad_sequences(sources, 0, side="left")  # left-padded sources too
    assert model.generate_target(ids, attention_mask=mask, max_new_tokens=6) == got
    out = model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=EOS)
    assert out[:, 0].tolist() == [START] * 3  # transformers' form: start token, then the ids


def test_encoder_and_cross_projection_run_once_across_steps_and_beams():
    model = build()
    calls = {"encoder": 0, "cross_kv": 0}
    model.encoder.register_forward_hook(
        lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1)
    )
    model.decoder.transformer.h[0].crossattention.c_attn.register_forward_hook(
        lambda *a: calls.__setitem__("cross_kv", calls["cross_kv"] + 1)
    )
    out = model.generate_target(
        [[5, 6, 7], [8, 9]], max_new_tokens=5, num_beams=3, eos_token_id=None
    )
    assert len(out) == 2 and all(len(t) == 5 for t in out)
    assert calls == {"encoder": 1, "cross_kv": 1}


def test_labels_are_unshifted_and_decoder_inputs_derived():
    model = build()
    batch = EncoderDecoderCollator(decoder_start_token_id=START, eos_token_id=EOS)(
        [([5, 6], [7, 8]), ([9], [10])]
    )
    assert batch["decoder_input_ids"].tolist() == [[START, 7, 8], [START, 10, PAD]]
    assert batch["labels"].tolist() == [[7, 8, EOS], [10, EOS, -100]]
    with torch.no_grad():
        out = model(**batch)
        derived = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
        )
    want = torch.nn.functional.cross_entropy(
        out.logits.reshape(-1, 16), batch["labels"].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, want)
    torch.testing.assert_close(derived.loss, out.loss, atol=1e-6, rtol=0)
    chunked = model(**batch, return_logits=False)  # (eval mode: no dropout in either)
    assert chunked.logits is None
    torch.testing.assert_close(chunked.loss, out.loss, atol=1e-5, rtol=0)


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
    del batch["input_ids"]
    g = torch.Generator().manual_seed(seed)
    batch["encoder_outputs"] = (torch.randn(2, 4, 48, generator=g),)
    return batch


BASE = {
    "vocab_size": 16,
    "bos_token_id": START,
    "eos_token_id": EOS,
    "decoder_start_token_id": START,
    "pad_token_id": PAD,
}
CASES = [
    ModelCase(
        GPT2ForConditionalGeneration,
        BASE,
        enc_dec_batch,
        {"logits": (2, 6, 16), "encoder_last_hidden_state": (2, 4, 32)},
        name="separate",
    ),
    ModelCase(
        GPT2ForConditionalGeneration,
        {**BASE, "share_encoder_decoder": True},
        enc_dec_batch,
        {"logits": (2, 6, 16)},
        name="shared",
    ),
    ModelCase(
        GPT2ForConditionalGeneration,
        {**BASE, "encoder_hidden_size": 48},
        external_states_batch,
        {"logits": (2, 6, 16)},
        no_grad=(r"^encoder\.",),  # (the GPT-2 encoder is not run: the states come given)
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
    exact = exact_match(model.generate_target([s for s, _ in test], max_new_tokens=7), test)
    assert exact >= 0.95, f"held-out exact match {exact:.3f}"
    beams = model.generate_target([s for s, _ in test[:50]], max_new_tokens=7, num_beams=3)
    assert exact_match(beams, test[:50]) >= 0.95


def test_gradient_checkpointing_covers_both_stacks_and_keeps_the_loss():
    model = build(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0).train()
    batch = EncoderDecoderCollator(decoder_start_token_id=START, eos_token_id=EOS)(
        [([5, 6, 7], [8, 9]), ([10], [11, 12, 13])]
    )
    plain = model(**batch).loss
    plain.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.encoder.gradient_checkpointing and model.decoder.transformer.gradient_checkpointing
    again = model(**batch).loss
    again.backward()
    torch.testing.assert_close(again, plain, atol=0, rtol=0)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads[name], atol=1e-6, rtol=1e-5, msg=name)
    model.gradient_checkpointing_disable()
    assert not model.encoder.gradient_checkpointing and not model.is_gradient_checkpointing
