"""`GPT2Config` reads and writes `config.json` exactly as `transformers` does."""

from __future__ import annotations

import json

import pytest
import transformers

from gpt2kit.config import ACTIVATIONS, PRESETS, ConfigError, GPT2Config

# Bookkeeping each library stamps on its own files.
STAMPS = ("transformers_version", "gpt2kit_version")

SETTINGS = [
    {},
    {"n_layer": 3, "n_embd": 48, "n_head": 6, "n_inner": 100, "activation_function": "relu"},
    {
        "scale_attn_by_inverse_layer_idx": True,
        "reorder_and_upcast_attn": True,
        "scale_attn_weights": False,
        "add_cross_attention": True,
        "layer_norm_epsilon": 1e-6,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.2,
        "attn_pdrop": 0.3,
        "pad_token_id": 50256,
        "tie_word_embeddings": False,
        "summary_type": "last",
        "summary_activation": "tanh",
    },
    {"num_labels": 3, "problem_type": "single_label_classification"},
    {"id2label": {0: "NEG", 1: "POS"}, "label2id": {"NEG": 0, "POS": 1}},
]


def without_stamps(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in STAMPS}


@pytest.mark.parametrize("settings", SETTINGS)
def test_written_json_equals_transformers(tmp_path, settings):
    transformers.GPT2Config(**settings).save_pretrained(tmp_path / "hf")
    GPT2Config(**settings).save_pretrained(tmp_path / "ours")
    theirs = json.loads((tmp_path / "hf" / "config.json").read_text())
    ours = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert without_stamps(ours) == without_stamps(theirs)
    assert ours["gpt2kit_version"]


@pytest.mark.parametrize("settings", SETTINGS)
def test_round_trip_through_transformers(tmp_path, settings):
    # transformers writes -> we read -> we write -> transformers reads: nothing changes.
    transformers.GPT2Config(**settings).save_pretrained(tmp_path / "hf")
    ours = GPT2Config.from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.GPT2Config.from_pretrained(tmp_path / "ours")
    expected = transformers.GPT2Config(**settings).to_dict()
    got = back.to_dict()
    for key in expected:
        if key in STAMPS or key == "_name_or_path":
            continue
        assert got[key] == expected[key], key
    assert ours.num_labels == back.num_labels
    assert ours.label2id == back.label2id


def test_unknown_fields_kept(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"model_type": "gpt2", "n_layer": 2, "my_option": [1, 2], "rope": None})
    )
    cfg = GPT2Config.from_json_file(path)
    assert cfg.my_option == [1, 2] and cfg.get("rope", "x") is None
    assert cfg.get("absent", 7) == 7
    cfg.save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["my_option"] == [1, 2] and "rope" in written and written["n_layer"] == 2
    assert transformers.GPT2Config.from_pretrained(tmp_path / "out").my_option == [1, 2]


def test_aliases():
    cfg = GPT2Config(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=8, max_position_embeddings=32
    )
    assert (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_positions) == (64, 3, 8, 32)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (64, 3, 8)
    assert cfg.max_position_embeddings == 32 and cfg.head_dim == 8 and cfg.inner_dim == 256
    assert "hidden_size" not in cfg.to_dict()
    hf = transformers.GPT2Config(hidden_size=64)
    assert hf.n_embd == cfg.n_embd


# Sizes of the released checkpoints (their Hub config.json files).
RELEASED = {
    "gpt2": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
    "distilgpt2": (6, 12, 768),
}


@pytest.mark.parametrize("name", RELEASED)
def test_presets(name):
    cfg = GPT2Config.from_name(name)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == RELEASED[name]
    assert (cfg.vocab_size, cfg.n_positions) == (50257, 1024)
    # Everything else is transformers' default GPT2Config.
    hf = transformers.GPT2Config(
        n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd
    ).to_dict()
    ours = cfg.to_dict()
    for key in ours:
        if key in hf and key not in STAMPS:
            assert ours[key] == hf[key], key
    assert GPT2Config.from_name(f"openai-community/{name}").n_embd == cfg.n_embd
    assert GPT2Config.from_name(name, n_layer=2).n_layer == 2


def test_all_presets_listed():
    assert set(PRESETS) == set(RELEASED)
    with pytest.raises(ConfigError, match="unknown preset"):
        GPT2Config.from_name("gpt3")


def test_labels_and_problem_type_persist(tmp_path):
    cfg = GPT2Config(num_labels=4, problem_type="multi_label_classification")
    cfg.save_pretrained(tmp_path)
    back = GPT2Config.from_pretrained(tmp_path)
    assert back.num_labels == 4 and back.problem_type == "multi_label_classification"
    assert back.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2", 3: "LABEL_3"}
    named = GPT2Config(label2id={"O": 0, "B-PER": 1, "I-PER": 2})
    assert named.num_labels == 3 and named.id2label[1] == "B-PER"
    named.save_pretrained(tmp_path / "named")
    hf = transformers.GPT2Config.from_pretrained(tmp_path / "named")
    assert hf.id2label == {0: "O", 1: "B-PER", 2: "I-PER"} and hf.num_labels == 3
    # Changing num_labels replaces the label names.
    assert GPT2Config.from_pretrained(tmp_path / "named", num_labels=2).id2label == {
        0: "LABEL_0",
        1: "LABEL_1",
    }
    assert GPT2Config().num_labels == 2 == transformers.GPT2Config().num_labels


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"n_layer": -1}, "n_layer"),
        ({"n_embd": 0}, "n_embd"),
        ({"n_head": -4}, "n_head"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"n_positions": -8}, "n_positions"),
        ({"n_embd": 30, "n_head": 4}, "divisible by n_head"),
        ({"n_inner": -5}, "n_inner"),
        ({"activation_function": "swiglu"}, "activation_function"),
        ({"resid_pdrop": 1.5}, "resid_pdrop"),
        ({"layer_norm_epsilon": 0}, "layer_norm_epsilon"),
        ({"problem_type": "ranking"}, "problem_type"),
        ({"pad_token_id": 60000}, "pad_token_id"),
        ({"num_labels": 0}, "num_labels"),
    ],
)
def test_bad_configs_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        GPT2Config(**bad)


def test_bad_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        GPT2Config.from_json_file(path)
    path.write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match="llama"):
        GPT2Config.from_json_file(path)


def test_activations_supported():
    for name in ACTIVATIONS:
        assert GPT2Config(activation_function=name).activation_function == name
