"""Language-model heads: the shared harness, loss parity with `transformers`, aliases, `score`."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_hf_twin
from gpt2kit.models.lm import GPT2ForCausalLM, GPT2LMHeadModel
from gpt2kit.nn.backbone import GPT2Model
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


# -- the fused (chunked) LM loss used in training --------------------------------------------
@pytest.mark.parametrize("ignore_some", [False, True])
def test_linear_cross_entropy_equals_cross_entropy(monkeypatch, ignore_some):
    from gpt2kit.models import losses

    monkeypatch.setattr(
        losses, "_chunk_rows", lambda vocab, device: 7
    )  # several chunks, a ragged last
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(30, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 50, (30,), generator=g)
    if ignore_some:
        labels[::3] = -100
    fused = losses.linear_cross_entropy(hidden, weight, labels)
    (2.5 * fused).backward()  # a non-unit upstream gradient
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = torch.nn.functional.cross_entropy(hidden @ weight.T, labels, ignore_index=-100)
    (2.5 * ref).backward()
    torch.testing.assert_close(fused, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gh, hidden.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gw, weight.grad, atol=1e-6, rtol=1e-5)


def test_linear_cross_entropy_under_autocast_uses_its_dtype(monkeypatch):
    """Under bf16 autocast the products run in bf16, as `lm_head(hidden)` would, and the
    loss equals transformers' autocast loss (bf16 logits, fp32 cross-entropy)."""
    from gpt2kit.models import losses

    monkeypatch.setattr(losses, "_chunk_rows", lambda vocab, device: 7)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(30, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 50, (30,), generator=g)
    with torch.autocast("cpu", torch.bfloat16):
        fused = losses.linear_cross_entropy(hidden, weight, labels)
        ref = torch.nn.functional.cross_entropy((hidden @ weight.T).float(), labels)
    fused_grads = torch.autograd.grad(fused, (hidden, weight))
    ref_grads = torch.autograd.grad(ref, (hidden, weight))
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)
    exact = torch.nn.functional.cross_entropy(hidden @ weight.T, labels)
    assert float((fused - exact).detach().abs()) > 1e-6  # bf16 products, not fp32 ones
    for ours, theirs in zip(fused_grads, ref_grads):
        assert ours.dtype == torch.float32
        assert float((ours - theirs).norm() / theirs.norm()) < 1e-2


def test_linear_cross_entropy_errors_and_no_grad():
    from gpt2kit.models.losses import linear_cross_entropy

    hidden, weight = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match=r"token ids in \[0, 10\)"):
        linear_cross_entropy(hidden, weight, torch.tensor([1, 2, 10, -100]))
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, torch.tensor([1, 2, 3, -100]))
    ref = torch.nn.functional.cross_entropy(hidden @ weight.T, torch.tensor([1, 2, 3, -100]))
    torch.testing.assert_close(loss, ref)


@pytest.mark.parametrize("model_cls", [GPT2LMHeadModel, GPT2ForCausalLM])
def test_training_loss_skips_logits_and_matches_the_full_path(model_cls):
    config = tiny_config(embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = model_cls(config).train()
    batch = lm_batch(config, seed=1, seq=10)
    labels = batch["labels"].clone()
    labels[1, :3] = -100
    fused = model(
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=labels,
        return_logits=False,
    )
    assert fused.logits is None  # opt-in chunked loss: no [B, T, V] tensor
    fused.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full = model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    assert full.logits is not None  # as transformers: logits in training too
    full.loss.backward()
    torch.testing.assert_close(fused.loss, full.loss, atol=1e-6, rtol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-6, rtol=1e-5, msg=n)
    skipped = model(batch["input_ids"], labels=labels, skip_logits=True)  # (Liger's name)
    assert skipped.logits is None
    torch.testing.assert_close(skipped.loss, model(batch["input_ids"], labels=labels).loss)
    assert model.eval()(batch["input_ids"], labels=labels).logits is not None
    with pytest.raises(ValueError, match="needs labels"):
        model(batch["input_ids"], return_logits=False)


def test_fused_training_loss_equals_transformers_loss(tmp_path):
    config = tiny_config(embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    hf, folder = make_hf_twin(config, tmp_path / "hf")
    ours = GPT2LMHeadModel.from_pretrained(folder)
    ours.train()
    hf.train()
    batch = lm_batch(config, seed=5, seq=12)
    mine = ours(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    theirs = hf(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    mine.loss.backward()
    theirs.loss.backward()
    torch.testing.assert_close(mine.loss, theirs.loss, atol=1e-6, rtol=1e-5)
    hf_grads = dict(hf.named_parameters())
    for name in (
        "transformer.wte.weight",
        "transformer.h.0.mlp.c_fc.bias",
        "transformer.ln_f.weight",
    ):
        torch.testing.assert_close(
            dict(ours.named_parameters())[name].grad, hf_grads[name].grad, atol=1e-5, rtol=1e-4
        )


def test_double_heads_training_lm_loss_matches_the_full_path():
    from gpt2kit.models.double_heads import GPT2DoubleHeadsModel

    torch.manual_seed(0)
    model = GPT2DoubleHeadsModel(tiny_config(embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))
    model.train()
    ids = torch.randint(0, 99, (2, 3, 8))  # [B, C, T]
    mc = torch.tensor([0, 2])
    torch.manual_seed(1)  # the same dropout masks (the choice head's summary dropout)
    fused = model(ids, labels=ids, mc_labels=mc, return_logits=False)
    assert fused.logits is None and fused.mc_logits is not None
    (fused.loss + fused.mc_loss).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(1)
    full = model(ids, labels=ids, mc_labels=mc)
    (full.loss + full.mc_loss).backward()
    torch.testing.assert_close(fused.loss, full.loss, atol=1e-6, rtol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-6, rtol=1e-5, msg=n)
