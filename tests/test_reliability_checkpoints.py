"""Reliability: checkpoint folders (issue 18, "Checkpoints and configs"): shard indexes,
tensor types and values, atomic saves under kill -9 and a full disk, `gpt2kit info` on a
damaged folder. One test per case; docs/reliability.md has a row for each."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt2kit.checkpoint import CheckpointError
from gpt2kit.config import GPT2Config
from gpt2kit.models.auto import verify_checkpoint
from gpt2kit.models.lm import GPT2LMHeadModel

TINY = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64)


def tiny(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**TINY))


def sharded(tmp_path: Path) -> Path:
    """A tiny model saved in several shards."""
    folder = tmp_path / "sharded"
    tiny().save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


def index_of(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())


def write_index(folder: Path, index: dict) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def no_file_reads(monkeypatch):
    """Fail the test if any weights file is opened."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a weights file was opened: {args[:1]}")

    import safetensors
    import safetensors.torch

    monkeypatch.setattr(safetensors, "safe_open", refuse)
    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_shard_index_path_outside_folder_refused_without_opening(tmp_path, where, monkeypatch):
    folder = sharded(tmp_path)
    outside = tmp_path / "outside.safetensors"
    save_file({"x": torch.zeros(1)}, outside)
    index = index_of(folder)
    key = next(iter(index["weight_map"]))
    if where == "absolute":
        index["weight_map"][key] = str(outside)
    elif where == "dotdot":
        index["weight_map"][key] = "../outside.safetensors"
    else:
        (folder / "link.safetensors").symlink_to(outside)
        index["weight_map"][key] = "link.safetensors"
    write_index(folder, index)
    no_file_reads(monkeypatch)
    with pytest.raises(CheckpointError, match="outside the"):
        GPT2LMHeadModel.from_pretrained(folder)


def test_tensors_read_from_the_shard_the_index_names(tmp_path, caplog):
    folder = sharded(tmp_path)
    index = index_of(folder)
    shards = sorted(set(index["weight_map"].values()))
    # a tensor the index does not list, in a shard: ignored (with a warning), never loaded
    first = folder / shards[0]
    tensors = load_file(first)
    save_file({**tensors, "stray.weight": torch.ones(3)}, first, metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        model = GPT2LMHeadModel.from_pretrained(folder)
    assert "stray.weight not listed" in caplog.text
    ref = tiny()
    torch.testing.assert_close(model.state_dict(), ref.state_dict(), rtol=0, atol=0)


def test_duplicate_key_in_another_shard_is_an_error(tmp_path):
    folder = sharded(tmp_path)
    index = index_of(folder)
    key, home = next(iter(index["weight_map"].items()))
    other = next(s for s in sorted(set(index["weight_map"].values())) if s != home)
    tensors = load_file(folder / other)
    tensors[key] = load_file(folder / home)[key] + 1  # a second, different copy
    save_file(tensors, folder / other, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"{other} holds '{key}', which .* assigns to {home}"):
        GPT2LMHeadModel.from_pretrained(folder)


@pytest.mark.parametrize(
    "weight_map,words",
    [
        ({"h.0.ln_1.weight": 3}, r"weight_map\['h.0.ln_1.weight'\] is 3 \(int\)"),
        ({"h.0.ln_1.weight": ["a.safetensors"]}, r"is \['a.safetensors'\] \(list\)"),
        (["a.safetensors"], "expected an object with a non-empty 'weight_map'"),
        ({}, "non-empty 'weight_map'"),
    ],
)
def test_weight_map_types_checked(tmp_path, weight_map, words):
    folder = sharded(tmp_path)
    write_index(folder, {"metadata": {}, "weight_map": weight_map})
    with pytest.raises(CheckpointError, match=words):
        GPT2LMHeadModel.from_pretrained(folder)


def test_integer_tensor_where_floats_belong_refused(tmp_path):
    folder = tmp_path / "m"
    tiny().save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.1.ln_2.weight"] = torch.ones(32, dtype=torch.int64)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match="'transformer.h.1.ln_2.weight' has dtype torch.int64"
    ):
        GPT2LMHeadModel.from_pretrained(folder)


def test_nan_and_inf_weights_warn_naming_tensor(tmp_path, caplog):
    folder = tmp_path / "m"
    tiny().save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.0.mlp.c_fc.bias"][3] = float("nan")
    tensors["transformer.ln_f.bias"][0] = float("inf")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        GPT2LMHeadModel.from_pretrained(folder)
    assert "NaN or infinite" in caplog.text
    assert "transformer.h.0.mlp.c_fc.bias" in caplog.text and "transformer.ln_f.bias" in caplog.text


def test_save_fsyncs_files_and_directory(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def record(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    target = tmp_path / "m"
    tiny().save_pretrained(target)  # first save: one rename
    tiny(1).save_pretrained(target)  # re-save: the two-rename swap
    for name in ("model.safetensors", "config.json", "generation_config.json"):
        if (target / name).exists():
            assert sum(Path(p).name == name for p in synced) == 2, name  # once per save
    scratch = [p for p in synced if ".m.tmp-" in Path(p).name]
    assert len(scratch) == 2  # the scratch folder itself, before each rename
    assert synced.count(str(tmp_path)) >= 2  # the parent, after the renames


KILL_BETWEEN_RENAMES = textwrap.dedent(
    """
    import os, signal, sys, torch
    from gpt2kit.config import GPT2Config
    from gpt2kit.models.lm import GPT2LMHeadModel
    target = sys.argv[1]
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64))
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if ".old-" in str(dst):  # the first rename done, the second not yet
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    model.save_pretrained(target)
    """
)

KILL_WHILE_WRITING = textwrap.dedent(
    """
    import os, signal, sys, torch
    import safetensors.torch as st
    from gpt2kit.config import GPT2Config
    from gpt2kit.models.lm import GPT2LMHeadModel
    real = st.save_file
    def save_file(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        os.kill(os.getpid(), signal.SIGKILL)  # killed with a half-built scratch folder
    st.save_file = save_file
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64)).save_pretrained(sys.argv[1])
    """
)


def run_killed(script: str, target: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]


@pytest.mark.parametrize("next_step", ["load", "save"])
def test_kill_between_renames_recovered(tmp_path, next_step):
    target = tmp_path / "m"
    tiny(0).save_pretrained(target)
    run_killed(KILL_BETWEEN_RENAMES, target)
    assert not target.exists()  # the window the recovery is for
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(".m.old-" in n for n in left) and any(".m.tmp-" in n for n in left), left
    if next_step == "load":
        model = GPT2LMHeadModel.from_pretrained(target)
        # the scratch folder was complete: the killed save's weights (seed 1) are the folder
        torch.testing.assert_close(model.state_dict(), tiny(1).state_dict(), rtol=0, atol=0)
    else:
        tiny(2).save_pretrained(target)
        model = GPT2LMHeadModel.from_pretrained(target)
        torch.testing.assert_close(model.state_dict(), tiny(2).state_dict(), rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_scratch_of_killed_save_removed_by_next_save(tmp_path):
    target = tmp_path / "m"
    tiny(0).save_pretrained(target)
    run_killed(KILL_WHILE_WRITING, target)
    assert any(".m.tmp-" in p.name for p in tmp_path.iterdir())
    # the target is untouched by the killed save
    model = GPT2LMHeadModel.from_pretrained(target)
    torch.testing.assert_close(model.state_dict(), tiny(0).state_dict(), rtol=0, atol=0)
    tiny(3).save_pretrained(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_full_disk_during_save_names_folder(tmp_path, monkeypatch):
    target = tmp_path / "m"
    tiny(0).save_pretrained(target)
    import safetensors.torch as st

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(st, "save_file", full)
    with pytest.raises(OSError, match=f"no space left on device while saving {target}") as info:
        tiny(1).save_pretrained(target)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no scratch left behind
    model = GPT2LMHeadModel.from_pretrained(target)
    torch.testing.assert_close(model.state_dict(), tiny(0).state_dict(), rtol=0, atol=0)


def _info(folder: Path, capsys, *flags: str) -> tuple[int, str, str]:
    from gpt2kit.cli import main

    code = main(["info", str(folder), *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def _damage(tmp_path: Path, kind: str) -> Path:
    if kind == "missing shard":
        folder = sharded(tmp_path)
        shard = sorted(set(index_of(folder)["weight_map"].values()))[-1]
        (folder / shard).unlink()
        return folder
    if kind == "missing key in shard":
        folder = sharded(tmp_path)
        index = index_of(folder)
        key, shard = next(iter(index["weight_map"].items()))
        tensors = load_file(folder / shard)
        del tensors[key]
        save_file(tensors, folder / shard, metadata={"format": "pt"})
        return folder
    folder = tmp_path / "single"
    tiny().save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    if kind == "missing key":
        del tensors["transformer.h.1.attn.c_attn.weight"]
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    else:  # truncated
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return folder


@pytest.mark.parametrize(
    "kind,words",
    [
        ("missing shard", "names shards that are not there"),
        ("missing key in shard", "lacks 1 tensor"),
        ("missing key", "missing 1 backbone weight"),
        ("truncated", "cannot be read"),
    ],
)
def test_info_on_damaged_folder_reports_and_fails(tmp_path, kind, words, capsys):
    folder = _damage(tmp_path, kind)
    assert any(words in d for d in verify_checkpoint(folder)), verify_checkpoint(folder)
    code, out, err = _info(folder, capsys)
    assert code == 1, out
    assert "damaged" in err and words in err
    assert "parameters" not in out
    code, out, err = _info(folder, capsys, "--json")
    assert code == 1 and words in out


def test_info_on_sound_folder_still_prints_count(tmp_path, capsys):
    folder = sharded(tmp_path)
    assert verify_checkpoint(folder) == []
    code, out, err = _info(folder, capsys)
    assert code == 0 and "parameters" in out
