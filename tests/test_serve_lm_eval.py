"""lm-evaluation-harness against the server: `local-completions` (log-likelihoods through
`echo`, `logprobs`, `max_tokens`) gives the accuracy lm-eval's own `hf` backend gives on
the same folder, on a small multiple-choice task the test writes (YAML over a local file).

The folder is a tiny random GPT-2 written by `transformers` itself (no download); the
server loads that same folder.
"""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("transformers")
lm_eval = pytest.importorskip("lm_eval")

from gpt2kit.serve.app import create_app  # noqa: E402
from gpt2kit.serve.testing import BackgroundServer  # noqa: E402
from gpt2kit.tokenizer import GPT2Tokenizer  # noqa: E402

TASK = "gpt2kit_local_mc"

YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import torch
    import transformers

    path = tmp_path_factory.mktemp("hf-tiny")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128)
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    rng = random.Random(0)
    words = ["red", "blue", "green", "cat", "dog", "river", "stone", "light", "music", "bread"]
    with open(d / "data.jsonl", "w") as f:
        for i in range(24):
            choices = rng.sample(words, 3)
            q = f"Question {i}: the {rng.choice(words)} is like the"
            f.write(
                json.dumps({"question": q, "choices": [" " + c for c in choices], "label": i % 3})
                + "\n"
            )
    (d / f"{TASK}.yaml").write_text(YAML.format(name=TASK, data=d / "data.jsonl"))
    return d


def evaluate(model: str, model_args: str, task_dir) -> dict:
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(task_dir)),
        batch_size=1,
        log_samples=True,
    )
    return out


@pytest.mark.slow  # lm-eval's imports and two evaluations: ~1-3 min on a busy 2-core machine
def test_local_completions_matches_hf_backend(folder, task_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    hf = evaluate("hf", f"pretrained={folder},dtype=float32,device=cpu", task_dir)
    with BackgroundServer(create_app(str(folder), model_name="tiny")) as url:
        served = evaluate(
            "local-completions",
            f"base_url={url}/v1/completions,model=tiny,tokenizer={folder},"
            "tokenizer_backend=huggingface,num_concurrent=1,max_retries=1",
            task_dir,
        )
    a, b = hf["results"][TASK], served["results"][TASK]
    assert a["acc,none"] == b["acc,none"] and a["acc_norm,none"] == b["acc_norm,none"]
    # and each log-likelihood, not only the accuracy they add up to
    la = [r for s in hf["samples"][TASK] for r in s["resps"]]
    lb = [r for s in served["samples"][TASK] for r in s["resps"]]
    assert len(la) == len(lb) == 72
    for x, y in zip(la, lb):
        assert float(x[0][0]) == pytest.approx(float(y[0][0]), abs=1e-4)
        assert bool(x[0][1]) == bool(y[0][1])
