"""Language-model heads: the shared harness, loss parity with `transformers`, aliases, `score`."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_hf_twin
from gpt2kit.models.backbone import GPT2Model
from gpt2kit.models.lm import GPT2ForCausalLM, GPT2LMHeadModel
from harness import SEQ, ModelCase, backbone_batch, check_model_case, lm_batch, tiny_config

V, D = 100, 32
CASES = [
    ModelCase(GPT2Model, {}, backbone_batch, {"last_hidden_state": (2, SEQ, D)}),
    ModelCase(GPT2LMHeadModel, {}, lm_batch, {"logits": (2, SEQ, V)}),
    ModelCase(GPT2ForCausalLM, {}, lm_batch, {"logits": (2, SEQ, V)}),
    ModelCase(
        GPT2LMHeadModel,
        {"n_inner": 48, "activation_function": "relu", "tie_word_embeddings": False},
        lm_batch,
        {"logits": (2, SEQ, V)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_harness(case, tmp_path):
    check_model_case(case, tmp_path)


def test_loss_with_ignored_labels_equals_transformers(tmp_path):
    config = tiny_config()
    hf, folder = make_hf_twin(config, tmp_path / "hf")
    ours = GPT2LMHeadModel.from_pretrained(folder)
    batch = lm_batch(config, seed=3, seq=12)
    labels = batch["labels"].clone()
    labels[0, :4] = -100  # e.g. a prompt not trained on
    with torch.no_grad():
        mine = ours(batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        theirs = hf(batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    torch.testing.assert_close(mine.loss, theirs.loss, atol=1e-6, rtol=1e-5)
    # And by hand: mean over the shifted targets that are not -100.
    logp = torch.log_softmax(mine.logits[:, :-1], -1)
    target = labels[:, 1:]
    keep = target != -100
    manual = -logp[keep].gather(-1, target[keep][:, None]).mean()
    torch.testing.assert_close(mine.loss, manual, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "source, target", [(GPT2LMHeadModel, GPT2ForCausalLM), (GPT2ForCausalLM, GPT2LMHeadModel)]
)
def test_causal_lm_and_lm_head_load_each_other(tmp_path, source, target):
    config = tiny_config()
    model = source(config).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [
        "GPT2LMHeadModel"
    ]
    loaded, report = target.from_pretrained(tmp_path, output_loading_info=True)
    assert report.new_keys == [] and report.dropped_keys == []
    ids = lm_batch(config, 0)["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return GPT2ForCausalLM(tiny_config()).eval()


def test_score_equals_manual_log_probs(scorer):
    text = [5, 17, 42, 8, 63]
    out = scorer.score([text])
    ids = torch.tensor([[99, *text]])  # BOS first, so the first token is scored too
    with torch.no_grad():
        logp = torch.log_softmax(scorer(ids).logits[0, :-1], -1)
    manual = logp.gather(-1, ids[0, 1:, None])[:, 0]
    torch.testing.assert_close(out.token_logprobs[0], manual)
    assert out.num_tokens.tolist() == [5]
    torch.testing.assert_close(out.total_logprob[0], manual.sum())
    torch.testing.assert_close(out.perplexity[0], torch.exp(-manual.sum() / 5))
    no_bos = scorer.score([text], add_bos=False)
    assert no_bos.token_logprobs[0].shape == (4,)


def test_score_batched_equals_one_at_a_time(scorer):
    texts = [[3, 4, 5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]
    batched = scorer.score(texts, batch_size=3)
    for i, text in enumerate(texts):
        alone = scorer.score([text])
        torch.testing.assert_close(
            batched.token_logprobs[i], alone.token_logprobs[0], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(batched.perplexity[i], alone.perplexity[0], atol=1e-4, rtol=1e-5)
    assert batched.num_tokens.tolist() == [9, 2, 4]
    # Perplexity of a random model over 100 tokens is near 100.
    assert 50 < float(batched.perplexity.mean()) < 200


def test_score_strings_with_tokenizer():
    tokenizer_module = pytest.importorskip("gpt2kit.tokenizer")
    tokenizer = tokenizer_module.GPT2Tokenizer.from_pretrained("gpt2")
    torch.manual_seed(0)
    model = GPT2ForCausalLM(
        tiny_config(vocab_size=50257, bos_token_id=50256, eos_token_id=50256)
    ).eval()
    out = model.score(["Hello world", "A longer sentence to score."], tokenizer)
    ids = tokenizer.encode("Hello world")
    assert out.num_tokens[0] == len(ids)
    torch.testing.assert_close(out.token_logprobs[0], model.score([ids]).token_logprobs[0])
    with pytest.raises(ValueError, match="tokenizer"):
        model.score(["no tokenizer"])


def test_score_errors(scorer):
    with pytest.raises(ValueError, match="64 positions"):
        scorer.score([[1] * 64])  # 64 + BOS
    with pytest.raises(ValueError, match="no token to score"):
        scorer.score([[]], add_bos=False)
