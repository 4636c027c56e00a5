"""Issue 20 (serving): `gpt2kit serve --adapter NAME=PATH`, many LoRA adapters in one batch.

Two random LoRA adapters (`init_lora_weights=False`: `B` is not zero, so each changes
the outputs) are saved in the PEFT format and served beside the base model. Concurrent
greedy requests for the base, A and B share decode steps (the batcher counts the steps
whose rows took different adapters), and each response's tokens equal the same request
run offline with only that adapter active (`set_adapter` / `disable_adapters` +
`generate`). Train-free and CPU-fast.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from gpt2kit import GPT2Config, GPT2ForCausalLM, LoraConfig  # noqa: E402
from gpt2kit.serve.adapters import AdapterSpecError, parse_adapter_args  # noqa: E402
from gpt2kit.serve.app import create_app  # noqa: E402
from gpt2kit.serve.tasks import TaskRunner  # noqa: E402
from gpt2kit.serve.testing import BackgroundServer  # noqa: E402
from gpt2kit.tokenizer import GPT2Tokenizer  # noqa: E402

PROMPTS = {
    "tiny": ["Hello world", "A much longer prompt that pads the others on the left"],
    "A": ["Once upon a time", "x"],
    "B": ["The quick brown fox jumps", "Numbers: 1 2 3"],
}
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}<|assistant|>"
# different lengths: rows leave the batch at different steps, the others go on
MAX_TOKENS = {"tiny": 5, "A": 12, "B": 9}


@pytest.fixture(scope="module")
def tok() -> GPT2Tokenizer:
    return GPT2Tokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="module")
def base() -> GPT2ForCausalLM:
    torch.manual_seed(0)
    return GPT2ForCausalLM(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128)).eval()


@pytest.fixture(scope="module")
def folders(base, tmp_path_factory) -> dict[str, Path]:
    out = {}
    root = tmp_path_factory.mktemp("adapters")
    for seed, name in enumerate(("A", "B"), start=1):
        model = copy.deepcopy(base)
        torch.manual_seed(seed)
        model.add_adapter(
            LoraConfig(
                r=4 * seed,  # (different ranks: the batch pads them to the largest)
                lora_alpha=16,
                target_modules=["c_attn", "c_proj", "c_fc"],
                init_lora_weights=False,
            )
        )
        with torch.no_grad():  # large enough updates that greedy picks change
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.normal_(0, 0.5)
        model.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def reference(base, folders) -> GPT2ForCausalLM:
    """The offline model: both adapters loaded, one active at a time."""
    model = copy.deepcopy(base)
    for name, path in folders.items():
        model.load_adapter(str(path), adapter_name=name)
    return model.eval()


def offline(reference, tok, model: str, prompt: str, n: int) -> list[int]:
    if model == "tiny":
        reference.disable_adapters()
    else:
        reference.enable_adapters()
        reference.set_adapter(model)
    try:
        ids = torch.tensor([tok.encode(prompt)])
        out = reference.generate(ids, max_new_tokens=n, eos_token_id=None)
    finally:
        reference.enable_adapters()
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def app(base, tok, folders):
    # a long gathering window: requests sent together share the first prefill and steps
    return create_app(
        copy.deepcopy(base),
        tok,
        model_name="tiny",
        max_tokens_cap=64,
        batch_wait_ms=1000,
        chat_template=TEMPLATE,
        adapters={name: str(path) for name, path in folders.items()},
    )


@pytest.fixture(scope="module")
def server(app):
    with BackgroundServer(app) as url:
        yield url


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


def completion_ids(http, model: str, prompt: str, max_tokens: int, n: int = 1) -> list[list[int]]:
    r = http.post(
        "/v1/completions",
        json={
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "n": n,
            "logprobs": 0,  # (the tokens themselves, not only their text)
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model
    return [c["logprobs"]["tokens"] for c in body["choices"]]


def test_adapters_change_the_outputs(reference, tok):
    """Guard on the test itself: each adapter's greedy tokens differ from the base's."""
    prompt, n = PROMPTS["A"][0], 12
    base_ids = offline(reference, tok, "tiny", prompt, n)
    assert offline(reference, tok, "A", prompt, n) != base_ids
    assert offline(reference, tok, "B", prompt, n) != base_ids


def test_mixed_batch_equals_each_adapter_offline(app, http, reference, tok):
    _check_mixed_batch(app, http, reference, tok)


def _check_mixed_batch(app, http, reference, tok):
    """Concurrent requests for the base, A and B (one with n=2) share decode steps, and
    every choice's tokens equal that request run offline with its adapter alone."""
    batcher = app.state.batcher
    mixed_before = batcher.mixed_adapter_steps
    jobs = [(m, p) for m, prompts in PROMPTS.items() for p in prompts]
    results: dict[tuple[str, str], list[list[int]]] = {}
    errors: list[BaseException] = []

    def send(model: str, prompt: str) -> None:
        try:
            n = 2 if (model, prompt) == ("A", "x") else 1  # n > 1: rows of one request
            results[model, prompt] = completion_ids(http, model, prompt, MAX_TOKENS[model], n)
        except BaseException as err:  # (re-raised below, in the test's thread)
            errors.append(err)

    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert batcher.mixed_adapter_steps > mixed_before, "no decode step mixed adapters"
    for (model, prompt), choices in results.items():
        want = offline(reference, tok, model, prompt, MAX_TOKENS[model])
        for got in choices:
            assert got == [tok.decode([i]) for i in want], (model, prompt)


def test_mixed_adapters_on_a_quantized_base_equal_offline(base, tok, folders, tmp_path):
    """`gpt2kit serve --quantize int8 --adapter A=... --adapter B=...`: the server's
    arguments (a model folder, `quantization`, adapter folders) through `create_app`;
    the offline reference is the same quantized model with both adapters loaded."""
    from gpt2kit.quantization.modules import QuantizedLinear

    base.save_pretrained(tmp_path / "lm")
    adapters = {name: str(path) for name, path in folders.items()}
    app = create_app(
        str(tmp_path / "lm"), tok, model_name="tiny", max_tokens_cap=64, batch_wait_ms=1000,
        chat_template=TEMPLATE, adapters=adapters, quantization="int8",
    )  # fmt: skip
    layer = app.state.batcher.model.transformer.h[0].attn.c_attn
    assert isinstance(layer.base_layer, QuantizedLinear)
    reference = GPT2ForCausalLM.from_pretrained(tmp_path / "lm", quantization="int8")
    for name, path in adapters.items():
        reference.load_adapter(path, adapter_name=name)
    reference.eval()
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        _check_mixed_batch(app, http, reference, tok)


def test_openai_client_picks_an_adapter(server, reference, tok):
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    ids = tok.encode("Once upon a time")
    r = client.completions.create(model="B", prompt=ids, max_tokens=8, temperature=0)
    assert r.model == "B"
    want = offline(reference, tok, "B", "Once upon a time", 8)
    assert r.choices[0].text == tok.decode(want)
    chunks = list(
        client.completions.create(
            model="A", prompt="Once upon a time", max_tokens=8, temperature=0, stream=True
        )
    )
    assert {c.model for c in chunks} == {"A"}
    want = offline(reference, tok, "A", "Once upon a time", 8)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == tok.decode(want)
    messages = [{"role": "user", "content": "Say something"}]
    chat = client.chat.completions.create(model="A", messages=messages, max_tokens=6, temperature=0)
    assert chat.model == "A"
    prompt = "<|user|>Say something\n<|assistant|>"
    assert chat.choices[0].message.content == tok.decode(offline(reference, tok, "A", prompt, 6))
    names = [m.id for m in client.models.list().data]
    assert names == ["tiny", "A", "B"]
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="C", prompt="x", max_tokens=2)
    assert info.value.code == "model_not_found"


def test_unknown_model_is_404_in_openais_shape(http):
    r = http.post("/v1/completions", json={"model": "nope", "prompt": "x", "max_tokens": 2})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["param"] == "model" and err["code"] == "model_not_found"
    assert "tiny, A, B" in err["message"]
    r = http.post(
        "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_models_lists_base_then_adapters(http):
    data = http.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["tiny", "A", "B"]
    assert data[1]["tasks"] == ["completions", "chat"]


def test_task_endpoints_run_the_base_and_refuse_adapters(http, base, tok):
    # The first adapter loaded is the model's active one; /v1/score must still be the base's.
    text = "Scoring runs on the base model"
    r = http.post("/v1/score", json={"model": "tiny", "input": text})
    assert r.status_code == 200, r.text
    want = TaskRunner(base, tok).function("score")([{"text": text}])[0]
    got = r.json()["data"][0]
    assert got["logprob"] == pytest.approx(want["logprob"], abs=1e-4)
    r = http.post("/v1/score", json={"model": "A", "input": text})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = http.post("/v1/embeddings", json={"model": "B", "input": text})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_parse_adapter_args_errors():
    assert parse_adapter_args(["a=./x", "b = ./y"]) == {"a": "./x", "b": "./y"}
    for bad in (["a"], ["=x"], ["a=./x", "a=./y"], ["a.b=./x"]):
        with pytest.raises(AdapterSpecError):
            parse_adapter_args(bad)


def test_create_app_refuses_an_adapter_named_like_the_base(base, tok, folders):
    with pytest.raises(AdapterSpecError, match="base model's name"):
        create_app(copy.deepcopy(base), tok, model_name="A", adapters={"A": str(folders["A"])})


def test_cli_rejects_a_bad_adapter_flag():
    r = subprocess.run(
        [sys.executable, "-m", "gpt2kit", "serve", "--adapter", "no-path-given"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "NAME=PATH" in r.stderr


def test_cli_names_the_flag_for_a_missing_adapter_folder(base, tmp_path):
    base.save_pretrained(tmp_path / "lm")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpt2kit",
            "serve",
            "--model",
            str(tmp_path / "lm"),
            "--adapter",
            f"a={tmp_path / 'missing'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "--adapter" in r.stderr and "missing" in r.stderr, r.stderr[-2000:]


def test_echo_logprobs_of_the_prompt_use_the_requests_adapter(http, reference, tok):
    """The prompt's logprobs (echo) come from the prefill's hidden states: the adapter's."""
    prompt = "Scoring a prompt under adapter B"
    ids = tok.encode(prompt)
    r = http.post(
        "/v1/completions",
        json={"model": "B", "prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 1},
    )
    assert r.status_code == 200, r.text
    got = r.json()["choices"][0]["logprobs"]["token_logprobs"]
    for model in ("B", "tiny"):
        if model == "tiny":
            reference.disable_adapters()
        else:
            reference.set_adapter(model)
        try:
            with torch.no_grad():
                lp = reference(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        finally:
            reference.enable_adapters()
        want = [lp[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
        if model == "B":
            assert got[0] is None and got[1:] == pytest.approx(want, abs=1e-4)
        else:  # (and the base's differ: the check above tells adapters apart)
            assert got[1:] != pytest.approx(want, abs=1e-4)
