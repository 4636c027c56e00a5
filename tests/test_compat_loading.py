"""`from_pretrained`'s `transformers` keywords, the Auto classes and Hub access (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import gpt2kit
from gpt2kit.hub import HubOptions, push_folder
from gpt2kit.nn.base import UnsupportedArgumentError
from harness import tiny_config


@pytest.fixture
def folder(tmp_path):
    gpt2kit.GPT2LMHeadModel(tiny_config()).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("key", ["dtype", "torch_dtype"])
@pytest.mark.parametrize("value", [torch.bfloat16, "bfloat16", "torch.bfloat16"])
def test_dtype_and_torch_dtype_load_that_dtype_and_store_nothing(folder, tmp_path, key, value):
    model = gpt2kit.GPT2LMHeadModel.from_pretrained(folder, **{key: value})
    assert model.dtype == torch.bfloat16
    assert "torch_dtype" not in model.config.extra and "dtype" not in model.config.extra
    model.save_pretrained(tmp_path / "again")  # (crashed when torch_dtype sat in the config)
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert "torch_dtype" not in saved
    assert gpt2kit.GPT2LMHeadModel.from_pretrained(tmp_path / "again", dtype="auto").dtype == (
        torch.bfloat16
    )


def test_dtype_conflict_and_auto(folder):
    assert (
        gpt2kit.GPT2LMHeadModel.from_pretrained(folder, torch_dtype="auto").dtype == torch.float32
    )
    with pytest.raises(ValueError, match="disagree"):
        gpt2kit.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float16, torch_dtype="bfloat16")


@pytest.mark.parametrize("device_map", ["auto", "cpu", {"": "cpu"}, torch.device("cpu")])
def test_device_map_one_device(folder, device_map):
    model = gpt2kit.GPT2LMHeadModel.from_pretrained(folder, device_map=device_map)
    expected = "cuda" if device_map == "auto" and torch.cuda.is_available() else "cpu"
    assert model.device.type == expected


@pytest.mark.parametrize("device_map", ["balanced", {"transformer.h.0": 0, "lm_head": "cpu"}])
def test_device_map_over_several_devices_is_an_error(folder, device_map):
    with pytest.raises(UnsupportedArgumentError, match="device_map"):
        gpt2kit.GPT2LMHeadModel.from_pretrained(folder, device_map=device_map)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"use_safetensors": False}, "use_safetensors"),
        ({"output_hidden_states": True}, "output_hidden_states"),
        ({"not_a_thing": 3}, "not_a_thing"),
        ({"attn_implementation": "flash_attention_2"}, "flash_attention_2"),
    ],
)
def test_unknown_keyword_is_an_error_naming_it(folder, kwargs, name):
    with pytest.raises(UnsupportedArgumentError, match=name):
        gpt2kit.GPT2LMHeadModel.from_pretrained(folder, **kwargs)
    with pytest.raises(TypeError):  # also a TypeError, as Python reports unknown keywords
        gpt2kit.AutoModelForCausalLM.from_pretrained(folder, **kwargs)


def test_config_overrides_and_task_options_still_work(folder):
    model = gpt2kit.GPT2ForSequenceClassification.from_pretrained(
        folder, num_labels=3, pad_token_id=0, trust_remote_code=True, low_cpu_mem_usage=True
    )
    assert model.score.out_features == 3 and model.config.pad_token_id == 0
    texts = gpt2kit.GPT2ForTextClassification.from_pretrained(folder, max_text_length=16)
    assert texts.max_text_length == 16


def test_attn_implementation_eager_takes_the_eager_path(folder, monkeypatch):
    ids = torch.tensor([[1, 2, 3, 4]])
    sdpa = gpt2kit.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="sdpa")
    expected = sdpa(ids).logits
    eager = gpt2kit.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")
    assert eager.attn_implementation == "eager" == eager.config._attn_implementation

    def no_sdpa(*args, **kwargs):
        raise AssertionError("SDPA called under attn_implementation='eager'")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_sdpa)
    torch.testing.assert_close(eager(ids).logits, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(AssertionError, match="SDPA called"):
        sdpa(ids)


def test_hub_keywords_reach_huggingface_hub_once(folder, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(folder)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = gpt2kit.AutoModelForCausalLM.from_pretrained(
        "someone/tiny-gpt2",
        revision="v1",
        token="hf_x",
        cache_dir="/tmp/cache",
        local_files_only=True,
        force_download=False,
    )
    assert isinstance(model, gpt2kit.GPT2LMHeadModel)
    assert calls and all(repo == "someone/tiny-gpt2" for repo, _ in calls)
    for _, kwargs in calls:
        assert kwargs["revision"] == "v1" and kwargs["token"] == "hf_x"
        assert kwargs["cache_dir"] == "/tmp/cache" and kwargs["local_files_only"] is True
    config = gpt2kit.AutoConfig.from_pretrained("someone/tiny-gpt2", revision="v2")
    assert config.n_layer == 2 and calls[-1][1]["revision"] == "v2"
    assert HubOptions.pop_from({"revision": "x", "num_labels": 2}) == HubOptions(revision="x")


def test_push_to_hub_through_a_stubbed_api(folder, monkeypatch):
    calls = []

    class StubApi:
        def __init__(self, token=None):
            calls.append(("HfApi", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
            calls.append(("upload_folder", kwargs["repo_id"], files, kwargs["commit_message"]))
            return "commit-info"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", StubApi)
    model = gpt2kit.GPT2LMHeadModel.from_pretrained(folder)
    assert model.push_to_hub("me/tiny", private=True, token="hf_x", commit_message="hi") == (
        "commit-info"
    )
    assert calls[0] == ("HfApi", "hf_x")
    assert calls[1] == (
        "create_repo",
        "me/tiny",
        {"private": True, "exist_ok": True, "token": "hf_x"},
    )
    kind, repo, files, message = calls[2]
    assert (kind, repo, message) == ("upload_folder", "me/tiny", "hi")
    assert "config.json" in files and "model.safetensors" in files
    assert push_folder(folder, "me/other", api=StubApi()) == "commit-info"


@pytest.mark.parametrize(
    "auto, cls",
    [
        ("AutoModel", "GPT2Model"),
        ("AutoModelForCausalLM", "GPT2LMHeadModel"),
        ("AutoModelForSequenceClassification", "GPT2ForSequenceClassification"),
        ("AutoModelForTokenClassification", "GPT2ForTokenClassification"),
        ("AutoModelForQuestionAnswering", "GPT2ForQuestionAnswering"),
        ("AutoModelForMultipleChoice", "GPT2ForMultipleChoice"),
        ("AutoModelForSeq2SeqLM", "GPT2ForConditionalGeneration"),
    ],
)
def test_auto_classes_pick_by_task_like_transformers(folder, auto, cls):
    auto_cls = getattr(gpt2kit, auto)
    assert type(auto_cls.from_pretrained(folder)) is getattr(gpt2kit, cls)
    config = gpt2kit.AutoConfig.from_pretrained(folder)
    built = auto_cls.from_config(config, torch_dtype=torch.bfloat16)
    assert type(built) is getattr(gpt2kit, cls) and built.dtype == torch.bfloat16
    with pytest.raises(OSError):
        auto_cls()


def test_architecture_auto_keeps_the_saved_class(folder, tmp_path):
    gpt2kit.GPT2ForQuestionAnswering(tiny_config()).save_pretrained(tmp_path / "qa")
    assert type(gpt2kit.AutoModelForArchitecture.from_pretrained(tmp_path / "qa")) is (
        gpt2kit.GPT2ForQuestionAnswering
    )
    assert type(gpt2kit.AutoModel.from_pretrained(tmp_path / "qa")) is gpt2kit.GPT2Model
