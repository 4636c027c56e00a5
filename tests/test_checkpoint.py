"""Checkpoint formats both ways with `transformers`, and every load/save failure mode."""

from __future__ import annotations

import logging
import socket

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import make_hf_twin
from gpt2kit.checkpoint import CheckpointError
from gpt2kit.models.lm import GPT2ForCausalLM, GPT2LMHeadModel
from gpt2kit.nn.backbone import GPT2Model
from harness import tiny_config


def ids_for(config, batch=2, seq=7):
    return torch.randint(
        0, config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0)
    )


def same_logits(ours, hf, ids, atol=1e-5):
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=atol, rtol=1e-4)


class NotATensor:
    """A class `torch.load(weights_only=True)` refuses to rebuild."""


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """A transformers GPT2LMHeadModel saved as model.safetensors."""
    return make_hf_twin(tiny_config(), tmp_path_factory.mktemp("ckpt") / "lm")


def test_single_safetensors(twin):
    hf, folder = twin
    assert (folder / "model.safetensors").is_file()
    same_logits(GPT2LMHeadModel.from_pretrained(folder), hf, ids_for(hf.config))


def test_sharded_safetensors_from_transformers(tmp_path, twin):
    hf, _ = twin
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    same_logits(GPT2LMHeadModel.from_pretrained(tmp_path), hf, ids_for(hf.config))


def test_sharded_save_loads_in_transformers(tmp_path, twin):
    hf, folder = twin
    ours = GPT2LMHeadModel.from_pretrained(folder)
    ours.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "model.safetensors").exists()
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    same_logits(ours, back, ids_for(hf.config), atol=0)
    assert GPT2LMHeadModel.from_pretrained(tmp_path).num_parameters() == ours.num_parameters()


def test_pytorch_bin_with_mask_buffers(tmp_path, twin):
    hf, _ = twin
    state = dict(hf.state_dict())
    # Old files carry the causal-mask buffers; they must be ignored.
    state["transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
    state["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "pytorch_model.bin")
    hf.config.save_pretrained(tmp_path)
    same_logits(GPT2LMHeadModel.from_pretrained(tmp_path), hf, ids_for(hf.config))


@pytest.mark.parametrize("direction", ["bare-into-lm", "lm-into-bare"])
def test_keys_with_or_without_transformer_prefix(tmp_path, direction):
    config = tiny_config()
    if direction == "bare-into-lm":
        hf_bare, folder = make_hf_twin(config, tmp_path / "bare", "GPT2Model")
        assert not any(
            k.startswith("transformer.") for k in load_file(folder / "model.safetensors")
        )
        ours = GPT2LMHeadModel.from_pretrained(folder)
        ids = ids_for(config)
        with torch.no_grad():
            hidden = hf_bare(ids).last_hidden_state
            torch.testing.assert_close(ours(ids).logits, hidden @ hf_bare.wte.weight.T)
    else:
        hf_lm, folder = make_hf_twin(config, tmp_path / "lm", "GPT2LMHeadModel")
        ours = GPT2Model.from_pretrained(folder)
        ids = ids_for(config)
        with torch.no_grad():
            theirs = hf_lm.transformer(ids).last_hidden_state
            torch.testing.assert_close(ours(ids).last_hidden_state, theirs, atol=1e-5, rtol=1e-4)


def test_causal_lm_alias_loads_and_saves_as_lm_head(tmp_path, twin):
    hf, folder = twin
    alias = GPT2ForCausalLM.from_pretrained(folder)
    same_logits(alias, hf, ids_for(hf.config))
    alias.save_pretrained(tmp_path)
    assert transformers.GPT2Config.from_pretrained(tmp_path).architectures == ["GPT2LMHeadModel"]
    same_logits(GPT2LMHeadModel.from_pretrained(tmp_path), hf, ids_for(hf.config))


@pytest.mark.parametrize("cls_name", ["GPT2LMHeadModel", "GPT2Model"])
def test_our_save_loads_in_transformers(tmp_path, cls_name):
    config = tiny_config()
    ours = {"GPT2LMHeadModel": GPT2LMHeadModel, "GPT2Model": GPT2Model}[cls_name](config).eval()
    ours.save_pretrained(tmp_path)
    hf = getattr(transformers, cls_name).from_pretrained(tmp_path).eval()
    ids = ids_for(config)
    with torch.no_grad():
        mine, theirs = ours(ids), hf(ids)
    key = "logits" if cls_name == "GPT2LMHeadModel" else "last_hidden_state"
    torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=1e-4)
    assert transformers.GPT2Config.from_pretrained(tmp_path).architectures == [cls_name]


def test_pickle_with_objects_is_refused(tmp_path, twin):
    hf, _ = twin

    torch.save(
        {"transformer.wte.weight": torch.zeros(3), "x": NotATensor()},
        tmp_path / "pytorch_model.bin",
    )
    hf.config.save_pretrained(tmp_path)
    with pytest.raises(
        CheckpointError, match=r"pytorch_model\.bin.*(Python objects|arbitrary code)"
    ):
        GPT2LMHeadModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_truncated_files_name_the_file(tmp_path, twin, fmt):
    hf, folder = twin
    hf.config.save_pretrained(tmp_path)
    if fmt == "safetensors":
        data = (folder / "model.safetensors").read_bytes()
        target = tmp_path / "model.safetensors"
    else:
        torch.save(hf.state_dict(), tmp_path / "full.bin")
        data = (tmp_path / "full.bin").read_bytes()
        (tmp_path / "full.bin").unlink()
        target = tmp_path / "pytorch_model.bin"
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=target.name):
        GPT2LMHeadModel.from_pretrained(tmp_path)
    target.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=target.name):
        GPT2LMHeadModel.from_pretrained(tmp_path)


def test_missing_backbone_key(tmp_path, twin):
    hf, folder = twin
    state = load_file(folder / "model.safetensors")
    del state["transformer.h.1.mlp.c_fc.weight"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    hf.config.save_pretrained(tmp_path)
    with pytest.raises(
        CheckpointError, match=r"lacks backbone weights: transformer\.h\.1\.mlp\.c_fc\.weight"
    ):
        GPT2LMHeadModel.from_pretrained(tmp_path)


def test_shape_mismatch_and_ignore(twin):
    _, folder = twin
    with pytest.raises(CheckpointError, match=r"wpe\.weight.*ignore_mismatched_sizes"):
        GPT2LMHeadModel.from_pretrained(folder, n_positions=32)
    model, report = GPT2LMHeadModel.from_pretrained(
        folder, n_positions=32, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert model.transformer.wpe.weight.shape == (32, 32)
    assert [m.split(":")[0] for m in report.mismatched_keys] == ["transformer.wpe.weight"]
    assert model.transformer.wpe.weight.std() > 0  # re-initialized, not left empty


def test_unexpected_backbone_key(tmp_path, twin):
    hf, folder = twin
    state = load_file(folder / "model.safetensors")
    state["transformer.h.5.ln_1.weight"] = torch.ones(32)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    hf.config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"h\.5\.ln_1\.weight"):
        GPT2LMHeadModel.from_pretrained(tmp_path)
    model, report = GPT2LMHeadModel.from_pretrained(
        tmp_path, ignore_unexpected_keys=True, output_loading_info=True
    )
    assert report.unexpected_keys == ["transformer.h.5.ln_1.weight"]


def test_missing_head_is_initialized_and_logged_once(tmp_path, caplog):
    config = tiny_config()
    make_hf_twin(config, tmp_path / "bare", "GPT2Model")
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        model, report = GPT2LMHeadModel.from_pretrained(
            tmp_path / "bare", tie_word_embeddings=False, output_loading_info=True
        )
    assert report.new_keys == ["lm_head.weight"]
    lines = [r.getMessage() for r in caplog.records if r.name == "gpt2kit"]
    assert len(lines) == 1 and "lm_head.weight" in lines[0] and "newly initialized" in lines[0]
    assert 0.01 < float(model.lm_head.weight.detach().std()) < 0.03  # normal(0, 0.02), not garbage
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()


def test_dtype_bfloat16_and_auto(tmp_path, twin):
    hf, folder = twin
    ids = ids_for(hf.config)
    bf16 = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        err = (bf16(ids).logits.float() - hf(ids).logits).abs().max()
    assert float(err) < 0.05
    assert GPT2LMHeadModel.from_pretrained(folder, dtype="auto").dtype == torch.float32
    assert GPT2LMHeadModel.from_pretrained(folder, dtype="bfloat16").dtype == torch.bfloat16
    hf.to(torch.bfloat16).save_pretrained(tmp_path)
    hf.to(torch.float32)
    assert GPT2LMHeadModel.from_pretrained(tmp_path, dtype="auto").dtype == torch.bfloat16
    assert GPT2LMHeadModel.from_pretrained(tmp_path).dtype == torch.float32


def test_save_is_atomic(tmp_path, monkeypatch):
    import safetensors.torch

    config = tiny_config()
    target = tmp_path / "ckpt"
    GPT2LMHeadModel(config).save_pretrained(target, max_shard_size="20KB")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    real_save = safetensors.torch.save_file
    calls = []

    def fail_on_second_shard(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            with open(filename, "wb") as f:  # a half-written file, then the crash
                f.write(b"partial")
            raise OSError("disk full")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", fail_on_second_shard)
    with pytest.raises(OSError, match="disk full"):
        GPT2LMHeadModel(config).save_pretrained(target, max_shard_size="20KB")
    after = {p.name: p.read_bytes() for p in target.iterdir()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "a temp folder was left behind"


def test_resave_keeps_other_files_and_drops_stale_shards(tmp_path):
    tmp_path = tmp_path / "ckpt"
    config = tiny_config()
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    (tmp_path / "README.md").write_text("notes")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "train.jsonl").write_text("{}")
    model.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "README.md",
        "config.json",
        "generation_config.json",
        "logs",
        "model.safetensors",
    ]
    assert (tmp_path / "logs" / "train.jsonl").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == [tmp_path.name]
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = ids_for(config)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_hub_id_offline_asks_for_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    connections = []

    def no_network(self, address):
        connections.append(address)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(CheckpointError, match="local folder"):
        GPT2LMHeadModel.from_pretrained("someone/gpt2kit-test-model-that-does-not-exist")
    assert connections == []


def test_not_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        GPT2LMHeadModel.from_pretrained(tmp_path / "nothing" / "here")
    (tmp_path / "config.json").write_text(tiny_config().to_json_string())
    with pytest.raises(CheckpointError, match="no weights"):
        GPT2LMHeadModel.from_pretrained(tmp_path)
