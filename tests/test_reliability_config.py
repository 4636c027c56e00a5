"""Reliability: config.json fields (issue 18, "Checkpoints and configs"). One test per case;
docs/reliability.md has a row for each (tests/test_reliability_table.py keeps it true)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from gpt2kit.config import ConfigError, GPT2Config
from gpt2kit.config_checks import check_allocation
from gpt2kit.models.lm import GPT2LMHeadModel
from gpt2kit.nn.backbone import GPT2Model

TINY = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64)


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("layer_norm_epsilon", "tiny", "layer_norm_epsilon must be a number"),
        ("resid_pdrop", "lots", "resid_pdrop must be a number"),
        ("embd_pdrop", None, "embd_pdrop must be a number"),
        ("initializer_range", "x", "initializer_range must be a number"),
        ("n_layer", 2.0, "n_layer must be a positive integer"),
        ("n_head", True, "n_head must be a positive integer"),
        ("n_inner", "64", "n_inner must be a positive integer"),
        ("pad_token_id", "x", "pad_token_id must be an integer"),
        ("bos_token_id", 1.5, "bos_token_id must be an integer"),
        ("eos_token_id", ["a"], "eos_token_id must be an integer or a list"),
        ("use_cache", "yes", "use_cache must be true or false"),
        ("tie_word_embeddings", 1, "tie_word_embeddings must be true or false"),
        ("activation_function", 3, "activation_function must be a string"),
        ("summary_type", "middle", "summary_type 'middle' is not one of"),
        ("problem_type", 5, "problem_type must be a string"),
    ],
)
def test_every_field_type_checked_by_name(field, value, words):
    with pytest.raises(ConfigError, match=words):
        GPT2Config(**{**TINY, field: value})


def test_id2label_as_list_is_named():
    with pytest.raises(ConfigError, match="id2label must be an object"):
        GPT2Config(**TINY, id2label=["neg", "pos"])
    with pytest.raises(ConfigError, match="id2label key 'a' is not an integer"):
        GPT2Config(**TINY, id2label={"a": "neg"})
    with pytest.raises(ConfigError, match="label2id must be an object"):
        GPT2Config(**TINY, label2id=["neg"])
    with pytest.raises(ConfigError, match="num_labels must be a positive integer"):
        GPT2Config(**TINY, num_labels="3")
    assert GPT2Config(**TINY, id2label={"0": "neg", "1": "pos"}).id2label == {0: "neg", 1: "pos"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", ["layer_norm_epsilon", "attn_pdrop", "initializer_range"])
def test_nan_and_inf_refused(field, value):
    with pytest.raises(ConfigError, match=f"{field} must be a finite number"):
        GPT2Config(**TINY, **{field: value})


def test_nan_in_config_file_names_file_and_field(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"n_layer": 2, "n_embd": 32, "n_head": 4, "layer_norm_epsilon": NaN}')
    with pytest.raises(ConfigError, match=r"config\.json: layer_norm_epsilon must be a finite"):
        GPT2Config.from_json_file(path)


@pytest.mark.parametrize("field", ["bos_token_id", "eos_token_id", "pad_token_id"])
def test_special_ids_inside_vocabulary(field, caplog):
    with pytest.raises(ConfigError, match=f"{field} -1 is outside the vocabulary"):
        GPT2Config(**TINY, **{field: -1})
    if field == "pad_token_id":
        with pytest.raises(ConfigError, match="pad_token_id 100 is outside the vocabulary"):
            GPT2Config(**TINY, pad_token_id=100)
    else:  # bos/eos beyond the vocabulary: named in a warning (documented), once
        with caplog.at_level(logging.WARNING, logger="gpt2kit"):
            GPT2Config(**TINY, **{field: 100 + len(field)})
            GPT2Config(**TINY, **{field: 100 + len(field)})
        warned = [
            r for r in caplog.records if f"{field} {100 + len(field)} is outside" in r.message
        ]
        assert len(warned) == 1
    if field == "eos_token_id":
        with pytest.raises(ConfigError, match="eos_token_id -2 is outside"):
            GPT2Config(**TINY, eos_token_id=[5, -2])
        assert GPT2Config(**TINY, eos_token_id=[5, 6]).eos_token_id == [5, 6]
    # transformers' default bos/eos (50256) in a small config passes without a word
    assert GPT2Config(**TINY).eos_token_id == 50256


def test_architectures_string_accepted(tmp_path):
    cfg = GPT2Config(**TINY, architectures="GPT2LMHeadModel")
    assert cfg.architectures == ["GPT2LMHeadModel"]
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "architectures": "GPT2Model"}))
    assert GPT2Config.from_pretrained(tmp_path).architectures == ["GPT2Model"]
    with pytest.raises(ConfigError, match="architectures must be a list of class names"):
        GPT2Config(**TINY, architectures=[1])


def test_non_utf8_config_file_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"n_layer": 2, "note": "caf\xe9"}')
    with pytest.raises(ConfigError, match=r"config\.json is not UTF-8 text \(byte b'\\xe9'"):
        GPT2Config.from_json_file(path)


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(n_layer=1_000_000_000), "n_layer"),
        (dict(n_embd=2**30, n_head=1), "n_embd"),
        (dict(vocab_size=10**12), "vocab_size"),
        (dict(n_inner=2**40), "n_inner"),
    ],
)
def test_sizes_checked_before_building(overrides, field):
    cfg = GPT2Config(**{**TINY, **overrides})
    with pytest.raises(ConfigError, match=rf"{field}=\d+ makes the weights need [\d.]+ [TP]B"):
        GPT2Model(cfg)  # returns at once: nothing is allocated first
    with pytest.raises(ConfigError, match=f"lower {field}"):
        GPT2LMHeadModel(cfg)
    # the meta device allocates nothing: sizes that fit in a tensor are allowed there
    if field != "n_embd":
        check_allocation(cfg, device="meta")


def test_size_no_tensor_can_hold_refused_on_meta():
    cfg = GPT2Config(**{**TINY, "n_embd": 2**30, "n_head": 1})
    with (
        pytest.raises(ConfigError, match="n_embd=1073741824 makes one tensor"),
        torch.device("meta"),
    ):
        GPT2Model(cfg)


def test_sizes_checked_before_loading(tmp_path):
    GPT2LMHeadModel(GPT2Config(**TINY)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="n_layer=1000000000 makes the weights need"):
        GPT2LMHeadModel.from_pretrained(tmp_path, n_layer=1_000_000_000)
