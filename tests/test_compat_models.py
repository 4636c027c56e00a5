"""Drop-in proof: code written for `transformers`' GPT-2 models, run twice in one test —
once with `transformers` as the module, once with `gpt2kit` — gives the same numbers
(1e-5 in fp32, equal ids).

Each recipe below is a `transformers` user's code with the library passed in as `lib`;
the checkpoints are tiny random models written by `transformers` at test time.
"""

from __future__ import annotations

import pytest
import torch

import gpt2kit
from conftest import make_hf_twin
from gpt2kit.tokenizer import ASSETS_DIR
from harness import tiny_config

transformers = pytest.importorskip("transformers")

LIBS = (transformers, gpt2kit)
TOL = dict(atol=1e-5, rtol=1e-5)
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def run_both(recipe, *args):
    """`recipe(lib, *args)` for transformers and for gpt2kit; returns both results."""
    results = []
    for lib in LIBS:
        torch.manual_seed(0)
        results.append(recipe(lib, *args))
    return results


def assert_same(a, b, tol=TOL):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(b.float(), a.float(), **tol)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k], tol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y, tol)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-5)
    else:
        assert a == b


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One transformers-written folder per class (heads included, so both load the same)."""
    root = tmp_path_factory.mktemp("compat")
    config = tiny_config(pad_token_id=0, **NO_DROPOUT)
    classes = ["GPT2LMHeadModel", "GPT2ForTokenClassification", "GPT2ForQuestionAnswering"]
    folders = {c: make_hf_twin(config, root / c, c)[1] for c in classes}
    folders["GPT2ForSequenceClassification"] = make_hf_twin(
        config.copy(num_labels=3), root / "seq", "GPT2ForSequenceClassification"
    )[1]
    untied = config.copy(tie_word_embeddings=False)
    folders["untied"] = make_hf_twin(untied, root / "untied", "GPT2LMHeadModel")[1]
    return folders


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory):
    """A tiny model with GPT-2's real vocabulary, and transformers' own fast tokenizer."""
    folder = tmp_path_factory.mktemp("text")
    make_hf_twin(
        tiny_config(vocab_size=50257, bos_token_id=50256, eos_token_id=50256, **NO_DROPOUT), folder
    )
    transformers.GPT2TokenizerFast.from_pretrained(ASSETS_DIR).save_pretrained(folder)
    return folder


def batch():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
    return ids, (ids != 0).long()


# -- each class's documented usage -----------------------------------------------------------
def lm_usage(lib, folder):
    model = lib.GPT2LMHeadModel.from_pretrained(folder)
    model.eval()
    ids, mask = batch()
    labels = ids.masked_fill(mask == 0, -100)
    out = model(ids, attention_mask=mask, labels=labels, use_cache=False)
    tup = model(ids, attention_mask=mask, labels=labels, use_cache=False, return_dict=False)
    return {
        "loss": out.loss,
        "logits": out["logits"],
        "first": out[0],
        "keys": list(out.keys()),
        "in": ("logits" in out, "loss" in out, "attentions" in out),
        "tuple": tup,
        "hidden": model(ids, output_hidden_states=True).hidden_states[-1],
        # (transformers 5 returns attention weights on the eager path only)
        "attn": lib.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")(
            ids, attention_mask=mask, output_attentions=True
        ).attentions[1][0],
    }


def test_lm_head_usage(checkpoints):
    assert_same(*run_both(lm_usage, checkpoints["GPT2LMHeadModel"]))


def lm_training_logits(lib, folder):
    model = lib.GPT2LMHeadModel.from_pretrained(folder)
    model.train()
    ids, _ = batch()
    out = model(ids[:1], labels=ids[:1])  # logits in training with labels, as transformers
    out.loss.backward()
    return out.loss, out.logits, model.transformer.wte.weight.grad


def test_lm_returns_logits_in_training(checkpoints):
    assert_same(*run_both(lm_training_logits, checkpoints["GPT2LMHeadModel"]))


def sequence_classification_usage(lib, folder):
    model = lib.AutoModelForSequenceClassification.from_pretrained(folder)
    model.eval()
    ids, mask = batch()
    out = model(ids, attention_mask=mask, labels=torch.tensor([2, 0]))
    model.config.problem_type = "multi_label_classification"
    multi = model(ids, attention_mask=mask, labels=torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    tup = model(ids, attention_mask=mask, use_cache=False, return_dict=False)
    return out.loss, out.logits, multi.loss, tup


def test_sequence_classification_usage(checkpoints):
    assert_same(
        *run_both(sequence_classification_usage, checkpoints["GPT2ForSequenceClassification"])
    )


def token_classification_usage(lib, folder):
    model = lib.AutoModelForTokenClassification.from_pretrained(folder)
    model.eval()
    ids, mask = batch()
    labels = torch.tensor([[0, 1, 1, 0, 1, 0], [1, 0, 1, 1, -100, -100]])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    return out.loss, out.logits, out.to_tuple()


def test_token_classification_usage(checkpoints):
    assert_same(*run_both(token_classification_usage, checkpoints["GPT2ForTokenClassification"]))


def question_answering_usage(lib, folder):
    model = lib.AutoModelForQuestionAnswering.from_pretrained(folder)
    model.eval()
    ids, mask = batch()
    out = model(
        ids,
        attention_mask=mask,
        start_positions=torch.tensor([1, 2]),
        end_positions=torch.tensor([3, 9]),
    )
    start = int(out.start_logits[0].argmax())
    return out.loss, out.start_logits, out.end_logits, start, out[1]


def test_question_answering_usage(checkpoints):
    assert_same(*run_both(question_answering_usage, checkpoints["GPT2ForQuestionAnswering"]))


def model_usage(lib, folder):
    model = lib.AutoModel.from_pretrained(folder)
    ids, mask = batch()
    out = model(ids, attention_mask=mask)
    embeds = model.get_input_embeddings()(ids)
    return out.last_hidden_state[mask.bool()], model(inputs_embeds=embeds).last_hidden_state


def test_base_model_usage(checkpoints):
    assert_same(*run_both(model_usage, checkpoints["GPT2LMHeadModel"]))


def additive_mask(lib, folder):
    model = lib.GPT2LMHeadModel.from_pretrained(folder).eval()
    ids, _ = batch()
    T = ids.shape[1]
    keep = torch.ones(T, T).tril().bool()
    keep[3:, :2] = False  # the last tokens do not see the first two
    mask = torch.zeros(2, 1, T, T).masked_fill(~keep, torch.finfo(torch.float32).min)
    return model(ids, attention_mask=mask).logits


def test_float_4d_mask_is_additive(checkpoints):
    assert_same(*run_both(additive_mask, checkpoints["GPT2LMHeadModel"]))


# -- recipes -----------------------------------------------------------------------------------
def manual_cache_loop(lib, folder):
    model = lib.GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = torch.tensor([[5, 6, 7]])
    generated = ids
    with torch.no_grad():
        out = model(ids, use_cache=True)
        past = out.past_key_values
        for _ in range(6):
            nxt = out.logits[:, -1:].argmax(-1)
            generated = torch.cat([generated, nxt], dim=1)
            out = model(nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
    return generated, out.logits, past.get_seq_length()


def dynamic_cache_loop(lib, folder):
    model = lib.GPT2LMHeadModel.from_pretrained(folder).eval()
    cache = transformers.DynamicCache()  # (a transformers object, in both runs)
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    logits = []
    with torch.no_grad():
        out = model(ids, past_key_values=cache, use_cache=True)
        for _ in range(4):
            nxt = out.logits[:, -1:].argmax(-1)
            out = model(nxt, past_key_values=cache, use_cache=True)
            logits.append(out.logits)
    return torch.cat(logits, 1), cache.get_seq_length()


def test_manual_cache_loop(checkpoints):
    assert_same(*run_both(manual_cache_loop, checkpoints["GPT2LMHeadModel"]))


def test_dynamic_cache_is_written_in_place(checkpoints):
    assert_same(*run_both(dynamic_cache_loop, checkpoints["GPT2LMHeadModel"]))


def test_legacy_tuple_cache_and_cache_name(checkpoints):
    model = gpt2kit.GPT2LMHeadModel.from_pretrained(checkpoints["GPT2LMHeadModel"]).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    full = model(ids).logits[:, -1]
    past = model(ids[:, :3], use_cache=True).past_key_values
    legacy = past.to_legacy_cache()
    torch.testing.assert_close(model(ids[:, 3:], past_key_values=legacy).logits[:, -1], full, **TOL)
    past = model(ids[:, :3], use_cache=True).cache
    step = model(ids[:, 3:], cache=past, cache_position=torch.tensor([3]))
    torch.testing.assert_close(step.logits[:, -1], full, **TOL)
    with pytest.raises(ValueError, match="cache_position"):
        model(ids[:, 3:], cache=past, cache_position=torch.tensor([9]))


def strided_perplexity(lib, folder):
    """transformers' "Perplexity of fixed-length models" recipe."""
    model = lib.GPT2LMHeadModel.from_pretrained(folder).eval()
    input_all = torch.randint(1, 99, (1, 150), generator=torch.Generator().manual_seed(3))
    max_length, stride = model.config.n_positions, 16
    seq_len = input_all.size(1)
    nlls, prev_end_loc = [], 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = input_all[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            nlls.append(model(input_ids, labels=target_ids).loss)
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return torch.exp(torch.stack(nlls).mean())


def test_strided_perplexity(checkpoints):
    assert_same(*run_both(strided_perplexity, checkpoints["GPT2LMHeadModel"]))


def training_loop(lib, folder, checkpointing=False):
    model = lib.GPT2LMHeadModel.from_pretrained(folder)
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, mask = batch()
    labels = ids.masked_fill(mask == 0, -100)
    losses = []
    for _ in range(3):
        outputs = model(input_ids=ids, attention_mask=mask, labels=labels)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(outputs.loss.detach())
    return losses, model.transformer.h[0].mlp.c_fc.bias.detach()


def test_manual_training_loop(checkpoints):
    assert_same(*run_both(training_loop, checkpoints["GPT2LMHeadModel"]))


def test_gradient_checkpointing(checkpoints):
    with_ckpt = run_both(training_loop, checkpoints["GPT2LMHeadModel"], True)
    assert_same(*with_ckpt)
    assert_same(with_ckpt[1], training_loop(gpt2kit, checkpoints["GPT2LMHeadModel"]))


def resize_with_pad_token(lib, folder):
    model = lib.GPT2LMHeadModel.from_pretrained(folder).eval()
    emb = model.resize_token_embeddings(101, pad_to_multiple_of=8)
    model.config.pad_token_id = 100
    ids = torch.tensor([[5, 6, 7, 100]])
    out = model(ids)  # (failed before: the head kept its old size)
    return (
        emb.weight.shape,
        model.get_output_embeddings().weight.shape,
        model.config.vocab_size,
        out.logits[:, :3, :100],  # old tokens' logits of the old vocabulary
        (out.logits[:, 3:], out.logits[..., 100:]),  # anything read from the new rows
        model.get_output_embeddings().weight is model.get_input_embeddings().weight,
    )


@pytest.mark.parametrize("which", ["GPT2LMHeadModel", "untied"])
def test_resize_with_new_pad_token(checkpoints, which):
    # New rows are drawn around the old rows' mean with 1e-9 of their covariance: what
    # does not read them agrees to 1e-5; what does (the new token's position, the new
    # logit columns) to 1e-3, as the two random draws differ.
    ours, theirs = run_both(resize_with_pad_token, checkpoints[which])
    assert_same(ours[:4] + ours[5:], theirs[:4] + theirs[5:])
    assert_same(ours[4], theirs[4], dict(atol=1e-3, rtol=1e-3))


def auto_classes(lib, folder):
    config = lib.AutoConfig.from_pretrained(folder)
    model = lib.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    ids, mask = batch()
    return (
        config.n_layer,
        type(lib.AutoModel.from_pretrained(folder)).__name__,
        model(ids, attention_mask=mask).logits[mask.bool()],
        model.can_generate(),
        model.generation_config.eos_token_id,
    )


def test_auto_classes(checkpoints):
    assert_same(*run_both(auto_classes, checkpoints["GPT2LMHeadModel"]))


def save_and_reload(lib, folder, out):
    model = lib.GPT2LMHeadModel.from_pretrained(folder).eval()
    model.save_pretrained(out / lib.__name__)
    # the other library reads the folder too
    other = gpt2kit if lib is transformers else transformers
    again = other.GPT2LMHeadModel.from_pretrained(out / lib.__name__).eval()
    ids, mask = batch()
    return model(ids).logits, again(ids).logits


def test_save_and_reload_both_ways(checkpoints, tmp_path):
    a, b = run_both(save_and_reload, checkpoints["GPT2LMHeadModel"], tmp_path)
    assert_same(a, b)
    assert_same(b[0], b[1])


def test_bad_inputs_are_errors_naming_the_fix(checkpoints):
    model = gpt2kit.GPT2LMHeadModel.from_pretrained(checkpoints["GPT2LMHeadModel"]).eval()
    torch.testing.assert_close(model([[5, 6, 7]]).logits, model(torch.tensor([[5, 6, 7]])).logits)
    with pytest.raises(ValueError, match="pad them"):
        model([[5, 6, 7], [1]])
    with pytest.raises(ValueError, match="0 \\(padding\\) and 1"):
        model(torch.tensor([[5, 6]]), attention_mask=torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="n_embd=32"):
        model(inputs_embeds=torch.zeros(1, 3, 16))
    with pytest.raises(TypeError, match="not_an_argument"):
        model(torch.tensor([[5]]), not_an_argument=1)


def test_output_behaves_like_transformers_model_output(checkpoints):
    model = gpt2kit.GPT2LMHeadModel.from_pretrained(checkpoints["GPT2LMHeadModel"]).eval()
    out = model(torch.tensor([[5, 6]]), labels=torch.tensor([[5, 6]]), use_cache=True)
    assert isinstance(out, dict) and list(out.keys()) == ["loss", "logits", "past_key_values"]
    assert out["cache"] is out.cache is out.past_key_values and "cache" in out
    assert [k for k, _ in out.items()] == list(out.keys()) and out[1:][0] is out.logits
    assert out.get("attentions") is None and "attentions" not in out
    with pytest.raises(TypeError):
        out.pop("loss")


# -- transformers' Trainer ---------------------------------------------------------------------
def trainer_run(lib, folder, out):
    model = lib.AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = transformers.GPT2TokenizerFast.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token
    texts = [
        "Hello there, how are you?",
        "The quick brown fox jumps over the lazy dog.",
        "To be, or not to be: that is the question.",
        "A short one.",
        "Language models predict the next token from the ones before it.",
        "Padding goes on the right here.",
    ]
    dataset = [tokenizer(t) for t in texts]
    args = transformers.TrainingArguments(
        output_dir=str(out / lib.__name__),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=3,
        max_steps=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return losses, trainer.evaluate()["eval_loss"]


def test_transformers_trainer_runs_on_gpt2kit_and_matches(text_checkpoint, tmp_path):
    (hf_losses, hf_eval), (our_losses, our_eval) = run_both(trainer_run, text_checkpoint, tmp_path)
    assert len(hf_losses) == len(our_losses) == 4
    assert our_losses == pytest.approx(hf_losses, rel=1e-5, abs=1e-5)
    assert our_eval == pytest.approx(hf_eval, rel=1e-5, abs=1e-5)
