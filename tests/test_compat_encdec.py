"""GPT2ForConditionalGeneration against transformers' EncoderDecoderModel (GPT-2 + GPT-2).

The same tiny random pair is built by `EncoderDecoderModel.from_encoder_decoder_pretrained`
and loaded here; every number (logits, loss, greedy and beam ids, a few training steps with
`DataCollatorForSeq2Seq`) must match to 1e-5 in fp32, and each side's folder loads in the other.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from gpt2kit import GPT2Config
from gpt2kit.checkpoint import _CONV1D
from gpt2kit.models.conditional_generation import GPT2ForConditionalGeneration

transformers = pytest.importorskip("transformers")

START, EOS, PAD, VOCAB = 97, 98, 0, 100


@pytest.fixture(autouse=True)
def _quiet_and_one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EncoderDecoderModel's FutureWarning on every loss
        yield
    torch.set_num_threads(n)


def gpt2_folder(tmp_path, name="gpt2", seed=0, **overrides):
    """A tiny random transformers GPT-2 LM saved to a folder (the pair's starting point)."""
    kwargs = dict(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=VOCAB,
        n_positions=32,
        bos_token_id=START,
        eos_token_id=EOS,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs))
    model.save_pretrained(tmp_path / name)
    return tmp_path / name


def hf_pair(tmp_path, seed=1, encoder_overrides=None):
    """transformers' EncoderDecoderModel of two tiny GPT-2s, saved; returns (model, folder)."""
    enc = gpt2_folder(tmp_path, "enc", seed=0, **(encoder_overrides or {}))
    dec = gpt2_folder(tmp_path, "dec", seed=2)
    torch.manual_seed(seed)  # the cross-attention is new: drawn here
    ref = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(
        str(enc), str(dec), encoder_attn_implementation="eager", decoder_attn_implementation="eager"
    )
    ref.config.decoder_start_token_id = START
    ref.config.pad_token_id = PAD
    ref.eval()
    ref.save_pretrained(tmp_path / "pair")
    return ref, tmp_path / "pair"


def batch():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 90, (3, 7), generator=g)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0  # right-padded sources
    mask[2, 3:] = 0
    labels = torch.randint(3, 90, (3, 6), generator=g)
    labels[0, 5] = EOS
    labels[1, 4:] = -100
    labels[2, 2] = EOS
    labels[2, 3:] = -100
    return src, mask, labels


def test_folder_loads_and_logits_loss_equal(tmp_path):
    ref, folder = hf_pair(tmp_path)
    model, report = GPT2ForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert report.new_keys == [] and report.dropped_keys == []
    assert model.config.decoder_start_token_id == START and model.config.pad_token_id == PAD
    src, mask, labels = batch()
    with torch.no_grad():
        want = ref(input_ids=src, attention_mask=mask, labels=labels)
        got = model(input_ids=src, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        got.encoder_last_hidden_state[mask.bool()],
        want.encoder_last_hidden_state[mask.bool()],
        atol=1e-5,
        rtol=0,
    )
    # explicit decoder inputs, a decoder mask, encoder_outputs given, tuple output
    dec = torch.randint(3, 90, (3, 5))
    dec_mask = torch.ones(3, 5, dtype=torch.long)
    dec_mask[2, 3:] = 0
    enc = ref.encoder(src, attention_mask=mask)
    with torch.no_grad():
        want = ref(
            encoder_outputs=enc,
            attention_mask=mask,
            decoder_input_ids=dec,
            decoder_attention_mask=dec_mask,
        ).logits
        got = model(
            encoder_outputs=(enc.last_hidden_state,),
            attention_mask=mask,
            decoder_input_ids=dec,
            decoder_attention_mask=dec_mask,
            return_dict=False,
        )[0]
    torch.testing.assert_close(got[dec_mask.bool()], want[dec_mask.bool()], atol=1e-5, rtol=0)


def test_generate_greedy_and_beam_equal(tmp_path):
    ref, folder = hf_pair(tmp_path)
    model = GPT2ForConditionalGeneration.from_pretrained(folder)
    src, mask, _ = batch()
    for kw in (
        dict(max_new_tokens=8),
        dict(max_new_tokens=8, num_beams=3),
        dict(max_new_tokens=6, num_beams=4, num_return_sequences=2, length_penalty=0.5),
    ):
        kw = dict(kw, eos_token_id=EOS, pad_token_id=PAD, do_sample=False)
        with torch.no_grad():
            want = ref.generate(input_ids=src, attention_mask=mask, **kw)
        got = model.generate(input_ids=src, attention_mask=mask, **kw)
        assert got.tolist() == want.tolist(), kw
        assert (got[:, 0] == START).all()
    # generate_target: the same ids, start token stripped, cut at EOS
    targets = model.generate_target(src, attention_mask=mask, max_new_tokens=8)
    ids = model.generate(input_ids=src, attention_mask=mask, max_new_tokens=8, eos_token_id=EOS)
    for row, target in zip(ids.tolist(), targets):
        new = row[1:]
        assert target == new[: new.index(EOS)] if EOS in new else target == new


def test_saved_folder_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=VOCAB,
        n_positions=32,
        bos_token_id=START,
        eos_token_id=EOS,
        pad_token_id=PAD,
        decoder_start_token_id=START,
    )
    model = GPT2ForConditionalGeneration(cfg).eval()
    model.save_pretrained(tmp_path / "ours")
    ref = transformers.EncoderDecoderModel.from_pretrained(
        tmp_path / "ours", attn_implementation="eager"
    ).eval()
    assert ref.config.decoder_start_token_id == START and ref.config.pad_token_id == PAD
    assert ref.config.decoder.add_cross_attention and not ref.config.encoder.add_cross_attention
    src, mask, labels = batch()
    with torch.no_grad():
        want = ref(input_ids=src, attention_mask=mask, labels=labels)
        got = model(input_ids=src, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=0)
    kw = dict(max_new_tokens=6, num_beams=2, eos_token_id=EOS, pad_token_id=PAD)
    with torch.no_grad():
        assert (
            model.generate(src, mask, **kw).tolist()
            == ref.generate(src, attention_mask=mask, **kw).tolist()
        )
    # and back: our folder -> ours again, identical
    again = GPT2ForConditionalGeneration.from_pretrained(tmp_path / "ours")
    with torch.no_grad():
        torch.testing.assert_close(
            again(src, mask, labels=labels).logits, got.logits, atol=0, rtol=0
        )
    # transformers' re-save of our folder loads here too
    ref.save_pretrained(tmp_path / "theirs")
    theirs = GPT2ForConditionalGeneration.from_pretrained(tmp_path / "theirs")
    with torch.no_grad():
        torch.testing.assert_close(
            theirs(src, mask, labels=labels).logits, got.logits, atol=1e-6, rtol=0
        )


def test_wider_encoder_uses_enc_to_dec_proj(tmp_path):
    ref, folder = hf_pair(tmp_path, encoder_overrides=dict(n_embd=48, n_head=4))
    assert hasattr(ref, "enc_to_dec_proj")
    model, report = GPT2ForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert report.new_keys == [] and model.encoder.config.n_embd == 48
    src, mask, labels = batch()
    with torch.no_grad():
        want = ref(input_ids=src, attention_mask=mask, labels=labels)
        got = model(input_ids=src, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path / "ours")
    back = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            back(input_ids=src, attention_mask=mask, labels=labels).logits,
            want.logits,
            atol=1e-5,
            rtol=0,
        )


def test_plain_gpt2_initializes_both_like_from_encoder_decoder_pretrained(tmp_path):
    folder = gpt2_folder(tmp_path)
    ref = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(
        str(folder),
        str(folder),
        encoder_attn_implementation="eager",
        decoder_attn_implementation="eager",
    ).eval()
    model, report = GPT2ForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    # only the cross-attention is new, on both sides
    assert report.new_keys and all(
        ".crossattention." in k or ".ln_cross_attn." in k for k in report.new_keys
    )
    ours = dict(model.state_dict())
    for key, value in ref.state_dict().items():
        if (
            ".crossattention." in key
            or ".ln_cross_attn." in key
            or key.endswith((".attn.bias", ".masked_bias"))
        ):
            continue
        mine = ours[key]
        value = value.t() if _CONV1D.search(key) else value  # (files and transformers: Conv1D)
        torch.testing.assert_close(mine, value, atol=0, rtol=0, msg=key)


def test_seq2seq_collator_and_training_steps_match(tmp_path):
    """transformers' DataCollatorForSeq2Seq (decoder inputs from the model) and an AdamW loop:
    the loss of every step equals EncoderDecoderModel's."""
    ref, folder = hf_pair(tmp_path)
    model = GPT2ForConditionalGeneration.from_pretrained(folder)
    tokenizer = _tokenizer(tmp_path)
    g = torch.Generator().manual_seed(3)
    features = [
        {
            "input_ids": torch.randint(3, 90, (int(n),), generator=g).tolist(),
            "labels": torch.randint(3, 90, (int(m),), generator=g).tolist() + [EOS],
        }
        for n, m in zip(
            torch.randint(2, 9, (12,), generator=g), torch.randint(1, 6, (12,), generator=g)
        )
    ]
    losses = {}
    for name, net in (("transformers", ref), ("gpt2kit", model)):
        collate = transformers.DataCollatorForSeq2Seq(tokenizer, model=net, padding=True)
        torch.manual_seed(0)
        net.train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
        losses[name] = []
        for step in range(4):
            b = collate(features[3 * step : 3 * step + 3])
            assert "decoder_input_ids" in b
            loss = net(**b).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses[name].append(loss.item())
    torch.testing.assert_close(
        torch.tensor(losses["gpt2kit"]), torch.tensor(losses["transformers"]), atol=1e-5, rtol=0
    )


def test_old_argument_names_fail_naming_the_new_ones():
    model = GPT2ForConditionalGeneration(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB, decoder_start_token_id=START)
    ).eval()
    src = torch.tensor([[5, 6, 7]])
    with pytest.raises(TypeError, match="'encoder_input_ids'.*input_ids"):
        model(torch.tensor([[START, 5]]), encoder_input_ids=src)
    with pytest.raises(TypeError, match="'encoder_attention_mask'.*attention_mask"):
        model(src, decoder_input_ids=src, encoder_attention_mask=torch.ones(1, 3))
    with pytest.raises(TypeError, match="'encoder_hidden_states'.*encoder_outputs"):
        model(decoder_input_ids=src, encoder_hidden_states=torch.randn(1, 3, 16))
    with pytest.raises(TypeError, match="generate_target"):
        model.generate([5, 6, 7], max_new_tokens=2)
    with pytest.raises(TypeError, match="'encoder_hidden_states'.*encoder_outputs"):
        model.generate(encoder_hidden_states=torch.randn(1, 3, 16), max_new_tokens=2)
    with pytest.raises(TypeError, match="'frobnicate'"):
        model(src, decoder_input_ids=src, frobnicate=1)
    with pytest.raises(ValueError, match="bare tensor"):
        model(decoder_input_ids=src, encoder_outputs=torch.randn(1, 3, 16))


def test_labels_without_start_or_pad_id_name_them():
    model = GPT2ForConditionalGeneration(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB)
    ).eval()
    src = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model(src, labels=src)
    model.config.decoder_start_token_id = START
    with pytest.raises(ValueError, match="pad_token_id"):
        model(src, labels=src)
    model.config.pad_token_id = PAD
    assert model(src, labels=src).loss.dim() == 0
    # explicit decoder inputs need neither
    fresh = GPT2ForConditionalGeneration(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB)
    )
    assert fresh(src, decoder_input_ids=src, labels=src).loss.dim() == 0


def test_auto_model_for_seq2seq_lm_reads_the_pair(tmp_path):
    from gpt2kit import AutoConfig, AutoModelForSeq2SeqLM
    from gpt2kit.models.auto import AutoModelForArchitecture

    _, folder = hf_pair(tmp_path)
    assert type(AutoModelForSeq2SeqLM.from_pretrained(folder)) is GPT2ForConditionalGeneration
    assert type(AutoModelForArchitecture.from_pretrained(folder)) is GPT2ForConditionalGeneration
    assert AutoConfig.from_pretrained(folder).decoder_start_token_id == START


def _tokenizer(tmp_path):
    """transformers' GPT2TokenizerFast on gpt2kit's shipped GPT-2 files, pad = 0 (only `pad`
    is used: the features are ids already)."""
    from pathlib import Path

    import gpt2kit

    assets = Path(gpt2kit.__file__).parent / "assets" / "gpt2"
    tok = transformers.GPT2TokenizerFast(
        vocab_file=str(assets / "vocab.json"), merges_file=str(assets / "merges.txt")
    )
    tok.pad_token = tok.convert_ids_to_tokens(PAD)
    return tok


def test_documented_differences_left_padding_and_masked_start(tmp_path):
    """docs/migrating-encdec.md's two numeric differences, each where transformers is wrong."""
    ref, folder = hf_pair(tmp_path)
    model = GPT2ForConditionalGeneration.from_pretrained(folder)
    src = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    labels = torch.tensor([[20, 21, EOS], [22, EOS, -100]])
    with torch.no_grad():
        theirs = ref(input_ids=src, attention_mask=mask, labels=labels).logits
        ours = model(input_ids=src, attention_mask=mask, labels=labels).logits
        ours_unpadded = model(input_ids=src[:1, 2:], labels=labels[:1]).logits
        theirs_unpadded = ref(input_ids=src[:1, 2:], labels=labels[:1]).logits
    # left padding: ours equals the unpadded source; transformers' positions count the pads
    torch.testing.assert_close(ours[0], ours_unpadded[0], atol=1e-5, rtol=0)
    assert (theirs[0] - theirs_unpadded[0]).abs().max() > 1e-3
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-5, rtol=0)  # the unpadded row
    # pad id == start id, decoder inputs derived: the start token is masked in both; only
    # the first position (no visible key) differs, and ours is what generation computes
    for m in (ref, model):
        m.config.pad_token_id = START
    with torch.no_grad():
        theirs = ref(input_ids=src[1:], labels=labels).logits
        ours = model(input_ids=src[1:], labels=labels).logits
        unmasked = model(
            input_ids=src[1:], decoder_input_ids=torch.full((2, 1), START), labels=labels[:, :1]
        ).logits
    torch.testing.assert_close(ours[:, 1:], theirs[:, 1:], atol=1e-5, rtol=0)
    assert (ours[:, 0] - theirs[:, 0]).abs().max() > 1e-3
    torch.testing.assert_close(ours[:, 0], unmasked[:, 0], atol=1e-5, rtol=0)


def test_start_token_falls_back_to_bos_in_generate_as_transformers(tmp_path):
    ref, folder = hf_pair(tmp_path)
    model = GPT2ForConditionalGeneration.from_pretrained(folder)
    for m in (ref, model):
        m.config.decoder_start_token_id = None
    src = torch.tensor([[5, 6, 7]])
    kw = dict(max_new_tokens=3, eos_token_id=EOS, pad_token_id=PAD)
    with torch.no_grad():
        want = ref.generate(input_ids=src, **kw)
    got = model.generate(input_ids=src, **kw)
    assert got.tolist() == want.tolist() and int(got[0, 0]) == START  # (BOS = START here)
    assert model.generate(input_ids=src, decoder_start_token_id=5, **kw)[0, 0] == 5


def seq2seq_trainer_run(model, tokenizer, features, out):
    """transformers' Seq2SeqTrainer with DataCollatorForSeq2Seq: 4 logged steps, an eval
    loss, and generated predictions (`predict_with_generate`)."""
    args = transformers.Seq2SeqTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=3,
        per_device_eval_batch_size=4,
        max_steps=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        predict_with_generate=True,
        generation_max_length=6,
        generation_num_beams=2,
    )
    trainer = transformers.Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=features,
        eval_dataset=features[:4],
        data_collator=transformers.DataCollatorForSeq2Seq(tokenizer, model=model),
    )
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    predictions = trainer.predict(features[:4]).predictions
    return losses, trainer.evaluate()["eval_loss"], predictions.tolist()


@pytest.mark.slow  # (~35 s on the shared 2-core machine: two Trainer runs)
def test_seq2seq_trainer_runs_on_gpt2kit_and_matches(tmp_path):
    from gpt2kit import AutoModelForSeq2SeqLM

    ref, folder = hf_pair(tmp_path)
    tokenizer = _tokenizer(tmp_path)
    g = torch.Generator().manual_seed(5)
    features = [  # (no EOS in the labels: 4 steps would teach it to stop at once)
        {
            "input_ids": torch.randint(3, 90, (int(n),), generator=g).tolist(),
            "labels": torch.randint(3, 90, (int(m),), generator=g).tolist(),
        }
        for n, m in zip(
            torch.randint(2, 9, (12,), generator=g), torch.randint(1, 6, (12,), generator=g)
        )
    ]
    theirs = seq2seq_trainer_run(ref, tokenizer, features, tmp_path / "hf")
    ours = seq2seq_trainer_run(
        AutoModelForSeq2SeqLM.from_pretrained(folder), tokenizer, features, tmp_path / "ours"
    )
    assert len(ours[0]) == len(theirs[0]) == 4
    assert ours[0] == pytest.approx(theirs[0], abs=1e-5, rel=0)
    assert ours[1] == pytest.approx(theirs[1], abs=1e-5, rel=0)
    assert ours[2] == theirs[2]
    # generation_max_length=6 reached our generate: start token + 5 new, then the padding
    assert all(row[0] == START and PAD not in row[1:6] and set(row[6:]) == {PAD} for row in ours[2])


@pytest.mark.parametrize("wider_encoder", [False, True])
def test_from_encoder_decoder_pretrained_as_transformers(tmp_path, wider_encoder):
    """`EncoderDecoderModel.from_encoder_decoder_pretrained(enc, dec)` under gpt2kit's name:
    every weight but the new cross-attention (and projection) equals transformers' pair."""
    import gpt2kit

    enc = gpt2_folder(tmp_path, "enc", seed=0, **({"n_embd": 48} if wider_encoder else {}))
    dec = gpt2_folder(tmp_path, "dec", seed=2)
    ref = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(str(enc), str(dec))
    model = gpt2kit.EncoderDecoderModel.from_encoder_decoder_pretrained(
        enc, dec, pad_token_id=PAD, decoder_start_token_id=START
    )
    assert type(model) is GPT2ForConditionalGeneration and not model.training
    assert model.config.decoder_start_token_id == START and model.config.pad_token_id == PAD
    assert hasattr(model, "enc_to_dec_proj") == wider_encoder
    ours = model.state_dict()
    new = (".crossattention.", ".ln_cross_attn.", "enc_to_dec_proj.")
    checked = 0
    for key, value in ref.state_dict().items():
        if any(n in key for n in new) or key.endswith((".attn.bias", ".masked_bias")):
            continue
        value = value.t() if _CONV1D.search(key) else value
        torch.testing.assert_close(ours[key], value, atol=0, rtol=0, msg=key)
        checked += 1
    assert checked == len([k for k in ours if not any(n in k for n in new)])
    # and it runs, saves and loads back as the same pair
    src, mask, labels = batch()
    model.save_pretrained(tmp_path / "pair")
    again = gpt2kit.EncoderDecoderModel.from_pretrained(tmp_path / "pair")
    with torch.no_grad():
        torch.testing.assert_close(
            again(src, mask, labels=labels).loss,
            model(src, mask, labels=labels).loss,
            atol=0,
            rtol=0,
        )


def test_a_pair_folder_into_an_lm_class_says_which_class_reads_it(tmp_path):
    from gpt2kit import CheckpointError, GPT2LMHeadModel

    _, folder = hf_pair(tmp_path)
    with pytest.raises(CheckpointError, match="GPT2ForConditionalGeneration"):
        GPT2LMHeadModel.from_pretrained(folder)
