"""Issue 21: the OpenAI API that clients and harnesses use, through the official client.

Completions with logprobs / echo / best_of / logit_bias, chat completions over a chat
template, embeddings, structured output, /tokenize and /detokenize. Logprobs are checked
against the log-softmax of the model's logits computed offline (1e-4).
"""

from __future__ import annotations

import base64
import json
import struct

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
    app = create_app(lm, tok, model_name="tiny", max_tokens_cap=64, chat_template=TEMPLATE)
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


# -- chat ---------------------------------------------------------------------------------------
def chat_prompt_ids(tok, messages, generation=True) -> list[int]:
    text = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages)
    return tok.encode(text + ("<|assistant|>" if generation else ""))


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hi"},
]


def test_chat_equals_completion_of_the_rendered_template(client, lm, tok):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0)
    ids = chat_prompt_ids(tok, MESSAGES)
    want = lm.generate(torch.tensor([ids]), max_new_tokens=6, eos_token_id=None)[0, len(ids) :]
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == tok.decode(want.tolist())
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 6
    assert r.choices[0].finish_reason == "length"


def test_chat_streams_through_the_client(client):
    kw = dict(model="tiny", messages=MESSAGES, max_completion_tokens=8, temperature=0)
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["length"]
    assert chunks[-1].usage.completion_tokens == 8


def test_chat_n_seed_stop_and_logprobs(client, lm, tok):
    kw = dict(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0.8, seed=3, n=2)
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len(a.choices) == 2
    greedy = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, temperature=0
    )
    text = greedy.choices[0].message.content
    stop = text[3:6]
    cut = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, stop=[stop]
    ).choices[0]
    assert cut.message.content == text[: text.find(stop)] and cut.finish_reason == "stop"
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    ids = chat_prompt_ids(tok, MESSAGES)
    gen = tok.encode(r.choices[0].message.content)
    want = offline_logprobs(lm, ids + gen)
    assert [e.token for e in content] == [tok.decode([t]) for t in gen]
    for k, e in enumerate(content):
        assert e.logprob == pytest.approx(float(want[len(ids) + k - 1, gen[k]]), abs=1e-4)
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].logprob == pytest.approx(e.logprob)
        assert bytes(e.bytes).decode() == e.token


def test_chat_without_a_template_is_400_naming_it(lm, tok):
    o = pytest.importorskip("openai")
    with BackgroundServer(create_app(lm, tok)) as url:
        c = o.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(o.BadRequestError) as err:
            c.chat.completions.create(model="m", messages=MESSAGES)
        assert err.value.body["code"] == "missing_chat_template"
        assert "chat template" in err.value.body["message"]


def test_chat_template_from_the_model_folder(tmp_path, lm, tok):
    lm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["chat_template"] = TEMPLATE
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    app = create_app(str(tmp_path))
    assert "chat" in app.state.tasks
    with BackgroundServer(app) as url, httpx.Client(base_url=url) as c:
        r = c.post("/tokenize", json={"messages": MESSAGES})
        assert r.json()["tokens"] == chat_prompt_ids(tok, MESSAGES)


def test_chat_template_is_sandboxed(lm, tok):
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with (
        BackgroundServer(create_app(lm, tok, chat_template=evil)) as url,
        httpx.Client(base_url=url) as c,
    ):
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES})
        assert r.status_code == 400 and "template failed" in r.json()["error"]["message"]


# -- embeddings ----------------------------------------------------------------------------------
def test_embeddings_float_base64_and_ids(client, lm, tok):
    texts = ["hello world", "a longer text about something"]
    r = client.embeddings.create(model="tiny", input=texts)
    assert [d.index for d in r.data] == [0, 1]
    with torch.no_grad():
        for d, t in zip(r.data, texts):
            h = lm.transformer(torch.tensor([tok.encode(t)])).last_hidden_state[0].mean(0)
            want = torch.nn.functional.normalize(h, dim=0)
            assert d.embedding == pytest.approx(want.tolist(), abs=1e-5)
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    assert r.usage.prompt_tokens == n_tokens == r.usage.total_tokens
    # (the client asks for base64 itself when no format is given, and decodes it; asked
    # explicitly, it hands back the string)
    b = client.embeddings.create(model="tiny", input=texts, encoding_format="base64")
    raw = base64.b64decode(b.data[0].embedding)
    assert struct.unpack(f"<{len(raw) // 4}f", raw) == pytest.approx(r.data[0].embedding, abs=1e-6)
    f = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    assert f.data[0].embedding == pytest.approx(r.data[0].embedding, abs=1e-6)
    ids = client.embeddings.create(model="tiny", input=[tok.encode(t) for t in texts])
    assert ids.data[1].embedding == pytest.approx(r.data[1].embedding, abs=1e-6)
    one = client.embeddings.create(model="tiny", input=tok.encode(texts[0]))
    assert len(one.data) == 1 and one.data[0].embedding == pytest.approx(
        r.data[0].embedding, abs=1e-6
    )


def test_embeddings_raw_base64_is_float32_le(http):
    r = http.post("/v1/embeddings", json={"input": "x", "encoding_format": "base64"}).json()
    raw = base64.b64decode(r["data"][0]["embedding"])
    vec = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(vec) == 32 and sum(v * v for v in vec) == pytest.approx(1.0, abs=1e-5)
    bad = http.post("/v1/embeddings", json={"input": "x", "dimensions": 8})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "dimensions"


# -- tokenize / detokenize -------------------------------------------------------------------------
def test_tokenize_and_detokenize(http, tok):
    r = http.post("/tokenize", json={"prompt": "Hello world", "return_token_strs": True}).json()
    assert (
        r["tokens"] == tok.encode("Hello world") and r["count"] == 2 and r["max_model_len"] == 128
    )
    assert r["token_strs"] == ["Hello", "Ġworld"]
    assert http.post("/detokenize", json={"tokens": r["tokens"]}).json() == {
        "prompt": "Hello world"
    }
    bad = http.post("/detokenize", json={"tokens": [10**6]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"


# -- structured output -----------------------------------------------------------------------------
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "kind": {"enum": ["cat", "dog"]},
    },
    "required": ["name", "age", "kind"],
    "additionalProperties": False,
}


def test_json_schema_every_sample_validates(client):
    jsonschema = pytest.importorskip("jsonschema")
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    r = client.completions.create(
        model="tiny",
        prompt="A person:",
        max_tokens=64,
        n=6,
        temperature=1.0,
        seed=5,
        extra_body={"response_format": fmt},
    )
    assert len(r.choices) == 6
    for c in r.choices:
        assert c.finish_reason == "stop", c.text
        jsonschema.validate(json.loads(c.text), PERSON)
    chat = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=64,
        n=4,
        temperature=1.0,
        seed=9,
        response_format=fmt,
    )
    for c in chat.choices:
        jsonschema.validate(json.loads(c.message.content), PERSON)


def test_json_array_regex_and_grammar(client):
    digits = {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 9},
        "maxItems": 3,
    }
    r = client.completions.create(
        model="tiny",
        prompt="JSON:",
        max_tokens=48,
        n=3,
        temperature=1.0,
        seed=1,
        extra_body={
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "d", "schema": digits},
            }
        },
    )
    for c in r.choices:
        v = json.loads(c.text)
        assert isinstance(v, list) and len(v) <= 3 and all(0 <= x <= 9 for x in v)
    r = client.completions.create(
        model="tiny",
        prompt="Phone:",
        max_tokens=32,
        n=3,
        temperature=1.0,
        seed=2,
        extra_body={"regex": r"\d{3}-\d{4}"},
    )
    import re

    for c in r.choices:
        assert re.fullmatch(r"\d{3}-\d{4}", c.text), c.text
    lark = 'start: "yes" | "no" | "maybe"'
    r = client.completions.create(
        model="tiny",
        prompt="Answer:",
        max_tokens=8,
        n=4,
        temperature=1.0,
        seed=3,
        extra_body={"grammar": lark},
    )
    assert all(c.text in ("yes", "no", "maybe") for c in r.choices)


def test_json_object_mode_gives_an_object(client):
    # Unconstrained keys and values: greedy on a random model still has to close it.
    r = client.completions.create(
        model="tiny",
        prompt="{",
        max_tokens=64,
        temperature=0,
        extra_body={"response_format": {"type": "json_object"}},
    )
    c = r.choices[0]
    if c.finish_reason == "stop":
        assert isinstance(json.loads(c.text), dict)
    else:  # ran out of tokens: still a valid prefix the grammar allowed
        assert c.text.startswith("{")


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"regex": "(unclosed"}, "regex"),
        ({"grammar": "start: ???"}, "grammar"),
        ({"regex": "a", "grammar": 'start: "a"'}, "grammar"),
    ],
)
def test_bad_constraints_are_400_naming_the_field(http, extra, param):
    r = http.post("/v1/completions", json={"prompt": "x", **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
