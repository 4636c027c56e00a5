"""The HTTP server: OpenAI wire format, batching correctness, task endpoints, limits, faults.

Every server runs on loopback in a thread (`BackgroundServer`) with a tiny random model
(2 layers, width 32, GPT-2's real vocabulary so the real tokenizer applies) and is shut
down by its fixture.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

import gpt2kit.decode

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from gpt2kit import GPT2Config, GPT2ForCausalLM  # noqa: E402
from gpt2kit.serve.app import create_app  # noqa: E402
from gpt2kit.serve.batching import Batcher, GenRequest, SamplingParams  # noqa: E402
from gpt2kit.serve.testing import BackgroundServer  # noqa: E402
from gpt2kit.tokenizer import GPT2Tokenizer  # noqa: E402

KEY = "sk-test"


def tiny_lm(seed: int = 0, n_positions: int = 128) -> GPT2ForCausalLM:
    torch.manual_seed(seed)
    return GPT2ForCausalLM(
        GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=n_positions)
    ).eval()


@pytest.fixture(scope="module")
def tok() -> GPT2Tokenizer:
    return GPT2Tokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="module")
def lm() -> GPT2ForCausalLM:
    return tiny_lm()


@pytest.fixture(scope="module")
def server(lm, tok):
    app = create_app(lm, tok, model_name="tiny", max_tokens_cap=64, max_body_bytes=4096)
    with BackgroundServer(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def reference(lm, tok, prompt: str, max_new: int, **kw) -> str:
    ids = torch.tensor([tok.encode(prompt)])
    out = lm.generate(ids, max_new_tokens=max_new, eos_token_id=None, **kw)
    return tok.decode(out[0, ids.shape[1] :].tolist())


def sse_events(text: str) -> list:
    lines = [ln[len("data: ") :] for ln in text.split("\n") if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(ln) for ln in lines[:-1]]


# -- basics ------------------------------------------------------------------------------------
def test_health_models_and_metrics(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and "completions" in h["tasks"] and "score" in h["tasks"]
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    m = client.get("/metrics", params={"format": "json"}).json()
    assert set(m["latency_seconds"]) == {"p50", "p90", "p99"} and m["completion_tokens"] >= 2
    text = client.get("/metrics").text
    assert 'gpt2kit_request_latency_seconds{quantile="0.99"}' in text
    assert 'gpt2kit_requests_total{endpoint="/v1/completions",status="200"}' in text


def test_greedy_equals_generate(client, lm, tok):
    body = {"prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0}
    r = client.post("/v1/completions", json=body).json()
    assert r["object"] == "text_completion"
    assert r["choices"][0]["text"] == reference(lm, tok, body["prompt"], 12)
    assert r["choices"][0]["finish_reason"] == "length"
    n_prompt = len(tok.encode(body["prompt"]))
    assert r["usage"] == {
        "prompt_tokens": n_prompt,
        "completion_tokens": 12,
        "total_tokens": n_prompt + 12,
    }


def test_seeded_sampling_equals_generate(client, lm, tok):
    body = {
        "prompt": "Once upon a time",
        "max_tokens": 10,
        "temperature": 0.9,
        "top_p": 0.95,
        "seed": 7,
    }
    got = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    # OpenAI semantics: no top-k unless asked (top_k=0 disables gpt2kit's default of 50).
    want = reference(
        lm, tok, body["prompt"], 10, do_sample=True, temperature=0.9, top_p=0.95, top_k=0, seed=7
    )
    assert got == want
    again = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert again == got


def test_batch_of_prompts_and_n(client, lm, tok):
    prompts = ["a b c", "Hello there, how are", "x"]
    r = client.post(
        "/v1/completions", json={"prompt": prompts, "max_tokens": 6, "temperature": 0, "n": 2}
    ).json()
    assert [c["index"] for c in r["choices"]] == list(range(6))
    for i, p in enumerate(prompts):
        want = reference(lm, tok, p, 6)
        assert r["choices"][2 * i]["text"] == want and r["choices"][2 * i + 1]["text"] == want
    assert r["usage"]["completion_tokens"] == 36
    ids = client.post(
        "/v1/completions", json={"prompt": [[464, 2068], [50256]], "max_tokens": 3}
    ).json()
    assert len(ids["choices"]) == 2


def test_stream_matches_non_stream(client):
    body = {"prompt": "Streaming works", "max_tokens": 15, "temperature": 0}
    full = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    r = client.post(
        "/v1/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    text = "".join(c["text"] for e in events for c in e["choices"])
    assert text == full
    assert [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]] == [
        "length"
    ]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 15


def test_stop_strings(client):
    body = {"prompt": "Stop here please", "max_tokens": 20, "temperature": 0}
    full = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    stop = full[5:9]
    cut = full[: full.find(stop)]
    r = client.post("/v1/completions", json={**body, "stop": [stop, "\u2603never"]}).json()[
        "choices"
    ][0]
    assert r["text"] == cut and r["finish_reason"] == "stop"
    s = client.post("/v1/completions", json={**body, "stop": stop, "stream": True})
    assert "".join(c["text"] for e in sse_events(s.text) for c in e["choices"]) == cut


def test_openai_client(server, lm, tok):
    openai = pytest.importorskip("openai")
    c = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in c.models.list()] == ["tiny"]
    r = c.completions.create(model="tiny", prompt="Hello world", max_tokens=8, temperature=0)
    want = reference(lm, tok, "Hello world", 8)
    assert r.choices[0].text == want and r.usage.completion_tokens == 8
    pieces = [
        ch.choices[0].text
        for ch in c.completions.create(
            model="tiny", prompt="Hello world", max_tokens=8, temperature=0, stream=True
        )
        if ch.choices
    ]
    assert "".join(pieces) == want and len(pieces) > 1
    with pytest.raises(openai.BadRequestError) as err:
        c.completions.create(model="tiny", prompt="x", max_tokens=8, temperature=3.5)
    assert err.value.body["param"] == "temperature"


def test_score_and_embed(client, lm, tok):
    texts = ["hello world", "a much longer text with several tokens"]
    r = client.post("/v1/score", json={"input": texts}).json()
    want = lm.score(texts, tok)
    for d, total, n in zip(r["data"], want.total_logprob, want.num_tokens):
        assert d["logprob"] == pytest.approx(float(total), abs=1e-4) and d["tokens"] == int(n)
    e = client.post("/v1/embed", json={"input": texts}).json()["data"]
    assert len(e) == 2 and len(e[0]["embedding"]) == 32


# -- errors and limits -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,param",
    [
        ({"prompt": "x", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 65}, "max_tokens"),  # above --max-tokens-cap
        ({"prompt": "x", "temperature": -1}, "temperature"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "n": 99}, "n"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "word " * 200}, "prompt"),  # longer than the model's 128 positions
        ({"prompt": [[1, 2], [60000]]}, "prompt"),  # id outside the vocabulary
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "x", "logprobs": 6}, "logprobs"),
        ({"prompt": "x", "suffix": "end"}, "suffix"),
        ({"prompt": "x", "best_of": 1, "n": 2}, "best_of"),
        ({"prompt": "x", "logit_bias": {"60000": 5}}, "logit_bias"),
        ({"prompt": "x", "logit_bias": {"5": 500}}, "logit_bias"),
        (
            {"prompt": "word " * 100, "max_tokens": 60},
            "max_tokens",
        ),  # prompt + max_tokens > context
    ],
)
def test_bad_requests_name_the_field(client, body, param):
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (
        err["param"] == param and err["type"] == "invalid_request_error" and param in err["message"]
    )


def test_malformed_json_and_body_size(client):
    r = client.post(
        "/v1/completions", content=b'{"prompt": "x", ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    r = client.post("/v1/completions", json={"prompt": "x" * 5000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunks():  # no content-length: the limit still holds
        for _ in range(10):
            yield b" " * 1000

    r = client.post(
        "/v1/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


def test_unsupported_task_names_the_ones_it_has(client):
    for path, body in [
        ("/v1/classify", {"input": "x"}),
        ("/v1/tag", {"input": "x"}),
        ("/v1/answer", {"input": {"question": "q", "context": "c"}}),
        ("/v1/choose", {"input": {"prompt": "p", "choices": ["a", "b"]}}),
    ]:
        r = client.post(path, json=body)
        assert r.status_code == 400, path
        msg = r.json()["error"]["message"]
        assert "completions" in msg and "score" in msg and "embed" in msg


def test_no_file_reading_from_client_input(client):
    # A path in the prompt is text to continue, never a file to open.
    r = client.post(
        "/v1/completions", json={"prompt": "/etc/passwd", "max_tokens": 2, "model": "/etc/passwd"}
    )
    assert r.status_code == 200 and "root:" not in r.text


def test_api_key(lm, tok):
    with BackgroundServer(create_app(lm, tok, api_key=KEY)) as url, httpx.Client(base_url=url) as c:
        assert c.get("/healthz").status_code == 200  # health checks need no key
        r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert c.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        ok = c.post(
            "/v1/completions",
            json={"prompt": "x", "max_tokens": 1},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert ok.status_code == 200


def test_queue_full_disconnect_and_timeout(lm, tok):
    # A long context so request A cannot finish before the test abandons it.
    model = tiny_lm(n_positions=1024)
    forward = model.forward
    gate = threading.Event()  # closed: A's decoding steps wait, so A cannot finish early
    calls = []

    def slow_forward(*args, **kwargs):
        # After A's prefill, its steps wait at the gate until C has been refused (on a loaded
        # machine no sleep is long enough to be sure A is still running), then run slowed so
        # A is certainly unfinished when its client goes away.
        if calls:
            gate.wait(30)
            time.sleep(0.02)
        calls.append(1)
        return forward(*args, **kwargs)

    model.forward = slow_forward
    # (the plain module path: the CPU decoder would run the steps without model.forward)
    with gpt2kit.decode.disabled():
        app = create_app(model, tok, max_batch_size=1, queue_size=1, max_tokens_cap=1000)
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        batcher = app.state.batcher
        # A holds the only batch slot; it is a stream we will abandon.
        # (EOS banned: a random model can end A early, and then B starts and C finds room)
        no_eos = {str(model.config.eos_token_id): -100}
        body = {"prompt": "a", "max_tokens": 1000, "stream": True, "logit_bias": no_eos}
        with c.stream("POST", "/v1/completions", json=body) as a:
            # (A's first line can arrive while A is still counted in the queue: wait for A
            # to hold the batch slot, or B would find the queue full)
            deadline = time.monotonic() + 30
            while batcher.running < 1:
                assert time.monotonic() < deadline, "A never started"
                time.sleep(0.01)
            # B waits in the queue (the queue holds one)...
            b_result: dict = {}
            t = threading.Thread(
                target=lambda: b_result.update(
                    r=c.post("/v1/completions", json={"prompt": "b", "max_tokens": 3})
                )
            )
            t.start()
            deadline = time.monotonic() + 30
            while batcher.queue_depth < 1:
                assert time.monotonic() < deadline, "B never queued"
                time.sleep(0.01)
            # ...so C is refused with 503 + Retry-After.
            r = c.post("/v1/completions", json={"prompt": "c", "max_tokens": 3})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "queue_full"
            gate.set()
            next(a.iter_lines())  # A is streaming
        # A's client went away: its slot frees and B finishes long before A's 1000 tokens.
        t.join(30)
        assert b_result["r"].status_code == 200
        assert b_result["r"].json()["choices"][0]["finish_reason"] == "length"
        deadline = time.monotonic() + 10
        while batcher.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batcher.running == 0
    app = create_app(lm, tok, timeout=0.001)
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 50})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"


def test_graceful_shutdown_finishes_running_requests(lm, tok):
    server = BackgroundServer(create_app(lm, tok, max_tokens_cap=100))
    url = server.__enter__()
    try:
        with (
            httpx.Client(base_url=url, timeout=60) as c,
            c.stream(
                "POST", "/v1/completions", json={"prompt": "x", "max_tokens": 100, "stream": True}
            ) as r,
        ):
            lines = r.iter_lines()
            next(lines)
            server.server.should_exit = True  # what SIGTERM does
            rest = "\n".join(lines)
        assert rest.rstrip().endswith("data: [DONE]")
    finally:
        server.__exit__()
    assert not server.thread.is_alive()


# -- the batcher without HTTP ------------------------------------------------------------------
def test_continuous_batching_matches_single_requests(lm, tok):
    """Rows joining and leaving a running batch give the same greedy tokens as alone."""
    prompts = [
        "one",
        "two three four five",
        "six seven",
        "a much longer prompt than the others here",
        "z",
    ]
    lengths = [20, 5, 12, 8, 15]
    batcher = Batcher(lm, tok, max_batch_size=3, batch_wait_ms=1).start()
    try:
        results: dict[int, list] = {i: [] for i in range(len(prompts))}
        done = threading.Semaphore(0)

        def sink(i):
            def put(ev):
                results[i].append(ev)
                if ev[0] != "text":
                    done.release()

            return put

        for i, (p, n) in enumerate(zip(prompts, lengths)):
            batcher.submit_generate(
                [GenRequest(tok.encode(p), SamplingParams(max_tokens=n, temperature=0), sink(i))]
            )
            time.sleep(0.01 * i)  # stagger arrivals so requests join mid-generation
        for _ in prompts:
            assert done.acquire(timeout=60)
        for i, (p, n) in enumerate(zip(prompts, lengths)):
            text = "".join(ev[1] for ev in results[i] if ev[0] == "text")
            assert text == reference(lm, tok, p, n), p
            assert results[i][-1] == ("done", "length", n)
        assert (
            batcher.steps > 0 and batcher.batched_rows / batcher.steps > 1
        )  # rows did share steps
    finally:
        batcher.stop()


@pytest.mark.parametrize(
    "task,path,body,n,has",
    [
        ("text-classification", "/v1/classify", {"input": ["good movie", "bad"]}, 2, "classify"),
        ("token-classification", "/v1/tag", {"input": ["John lives in Paris", "x"]}, 2, "tag"),
        (
            "question-answering",
            "/v1/answer",
            {"input": [{"question": "Who?", "context": "John lives in Paris."}]},
            1,
            "answer",
        ),
        (
            "multiple-choice",
            "/v1/choose",
            {"input": {"prompt": "The sky is", "choices": [" blue", " green"]}},
            1,
            "choose",
        ),
    ],
)
def test_task_endpoints_follow_the_model(task, path, body, n, has, tok):
    from gpt2kit.models.auto import AutoModelForArchitecture

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128, num_labels=3)
    model = AutoModelForArchitecture.from_config(config, task=task).eval()
    with (
        BackgroundServer(create_app(model, tok)) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        assert c.get("/healthz").json()["tasks"] == [has, "embed"]
        r = c.post(path, json=body)
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == n
        r = c.post("/v1/completions", json={"prompt": "x"})
        assert r.status_code == 400 and f"it serves: {has}, embed" in r.json()["error"]["message"]
