"""The request schema fuzzed with schemathesis (bounded; slow): whatever a client sends
to any operation of /openapi.json, the server answers < 500, and every error is OpenAI's
error object naming a field or null. Generated bodies include out-of-range numbers,
odd strings and wrong types; a 5xx or a non-JSON error fails the test.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from gpt2kit import GPT2Config, GPT2ForCausalLM  # noqa: E402
from gpt2kit.serve.app import create_app  # noqa: E402
from gpt2kit.tokenizer import GPT2Tokenizer  # noqa: E402

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def _app():
    torch.manual_seed(0)
    lm = GPT2ForCausalLM(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=64)).eval()
    return create_app(
        lm,
        GPT2Tokenizer.from_pretrained("gpt2"),
        max_tokens_cap=4,  # keeps every generated case short
        chat_template=TEMPLATE,
        timeout=30,
        queue_size=64,
    )


APP = _app()
# Cases go in-process through the ASGI app (schemathesis' `from_asgi`); its client runs
# the app's lifespan around each call, which starts and stops the batcher.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_fuzz_every_operation(case):
    response = case.call(timeout=60)
    assert response.status_code < 500, (case.path, case.body, response.text[:300])
    if response.status_code >= 400:
        err = response.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
