"""Issue 21: the OpenAI API that clients and harnesses use, through the official client.

Completions with logprobs / echo / best_of / logit_bias, chat completions over a chat
template, embeddings, structured output, /tokenize and /detokenize. Logprobs are checked
against the log-softmax of the model's logits computed offline (1e-4).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from gpt2kit import GPT2Config, GPT2ForCausalLM  # noqa: E402
from gpt2kit.serve.app import create_app  # noqa: E402
from gpt2kit.serve.testing import BackgroundServer  # noqa: E402
from gpt2kit.tokenizer import GPT2Tokenizer  # noqa: E402

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tok() -> GPT2Tokenizer:
    return GPT2Tokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="module")
def lm() -> GPT2ForCausalLM:
    torch.manual_seed(0)
    return GPT2ForCausalLM(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128)).eval()


@pytest.fixture(scope="module")
def server(lm, tok):
    app = create_app(lm, tok, model_name="tiny", max_tokens_cap=64)
    with BackgroundServer(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def offline_logprobs(lm, ids: list[int]) -> torch.Tensor:
    """`[T, V]` log-softmax of the model's logits over `ids` (position t predicts t+1)."""
    with torch.no_grad():
        return lm(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def greedy_ids(lm, tok, prompt: str, n: int) -> list[int]:
    ids = torch.tensor([tok.encode(prompt)])
    out = lm.generate(ids, max_new_tokens=n, eos_token_id=None)
    return out[0, ids.shape[1] :].tolist()


# -- completions: logprobs, echo, best_of, logit_bias ---------------------------------------------
def test_echo_max_tokens_0_scores_the_prompt(client, lm, tok):
    prompt = "The capital of France is Paris, of course"
    ids = tok.encode(prompt)
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=0, echo=True, logprobs=5)
    c = r.choices[0]
    assert c.text == prompt and r.usage.completion_tokens == 0
    lp = c.logprobs
    assert lp.tokens == [tok.decode([t]) for t in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    want = offline_logprobs(lm, ids)
    for k in range(1, len(ids)):
        assert lp.token_logprobs[k] == pytest.approx(float(want[k - 1, ids[k]]), abs=1e-4)
        top5 = want[k - 1].topk(5)
        got = sorted(lp.top_logprobs[k].values(), reverse=True)
        # the five best, plus the prompt's own token when it is not among them
        assert got[:5] == pytest.approx(top5.values.tolist(), abs=1e-4)
    assert lp.text_offset == [len(tok.decode(ids[:k])) for k in range(len(ids))]


def test_generated_logprobs_equal_offline_log_softmax(client, lm, tok):
    prompt = "Once upon a time"
    r = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=10, temperature=0, logprobs=3
    )
    c = r.choices[0]
    gen = greedy_ids(lm, tok, prompt, 10)
    assert c.text == tok.decode(gen)
    ids = tok.encode(prompt)
    want = offline_logprobs(lm, ids + gen)
    lp = c.logprobs
    assert len(lp.tokens) == 10
    for k, t in enumerate(gen):
        pos = len(ids) + k - 1
        assert lp.token_logprobs[k] == pytest.approx(float(want[pos, t]), abs=1e-4)
        # greedy: the chosen token is the best alternative
        assert max(lp.top_logprobs[k].values()) == pytest.approx(lp.token_logprobs[k], abs=1e-6)
        assert len(lp.top_logprobs[k]) <= 4
    assert lp.text_offset == [len(tok.decode(gen[:k])) for k in range(10)]


def test_echo_with_generation_joins_prompt_and_completion(client, lm, tok):
    prompt = "Hello there"
    ids = tok.encode(prompt)
    r = client.completions.create(
        model="tiny", prompt=ids, max_tokens=4, temperature=0, echo=True, logprobs=1
    )
    c = r.choices[0]
    gen = greedy_ids(lm, tok, prompt, 4)
    assert c.text == prompt + tok.decode(gen)
    assert len(c.logprobs.tokens) == len(ids) + 4
    want = offline_logprobs(lm, ids + gen)
    for k in range(1, len(ids) + 4):
        assert c.logprobs.token_logprobs[k] == pytest.approx(
            float(want[k - 1, (ids + gen)[k]]), abs=1e-4
        )


def test_stream_logprobs_match_non_stream(client):
    kw = dict(model="tiny", prompt="Streaming logprobs", max_tokens=8, temperature=0, logprobs=2)
    full = client.completions.create(**kw).choices[0].logprobs
    tokens, lps = [], []
    for ch in client.completions.create(**kw, stream=True):
        for c in ch.choices:
            if c.logprobs:
                tokens += c.logprobs.tokens
                lps += c.logprobs.token_logprobs
    assert tokens == full.tokens and lps == pytest.approx(full.token_logprobs, abs=1e-6)


def test_best_of_returns_the_candidate_with_the_best_mean_logprob(client):
    kw = dict(model="tiny", prompt="Pick", max_tokens=6, temperature=1.0, seed=11)
    cands = client.completions.create(**kw, n=3, logprobs=0).choices
    means = [sum(c.logprobs.token_logprobs) / len(c.logprobs.token_logprobs) for c in cands]
    best = client.completions.create(**kw, n=1, best_of=3).choices
    assert len(best) == 1 and best[0].text == cands[means.index(max(means))].text
    assert best[0].logprobs is None


def test_logit_bias_forces_and_forbids(client, lm, tok):
    forced = tok.encode(" banana")[0]
    r = client.completions.create(
        model="tiny", prompt="x", max_tokens=3, temperature=0, logit_bias={str(forced): 100}
    )
    assert r.choices[0].text == " banana" * 3
    first = greedy_ids(lm, tok, "x", 1)[0]
    r = client.completions.create(
        model="tiny", prompt="x", max_tokens=1, temperature=0, logit_bias={str(first): -100}
    )
    assert r.choices[0].text != tok.decode([first])


def test_suffix_is_refused(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny", prompt="a", suffix="b")
    assert err.value.body["param"] == "suffix"
