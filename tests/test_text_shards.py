"""Token shards: exact ids versus one `encode` of the whole text, reuse, staleness, blocks."""

from __future__ import annotations

import logging
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2kit.data import text_shards
from gpt2kit.data.readers import DataError
from gpt2kit.data.text_shards import (
    HEADER_BYTES,
    BlockDataset,
    TokenShards,
    last_safe_split,
    read_shard_header,
    tokenize_to_shards,
    tokenizer_fingerprint,
)
from gpt2kit.tokenizer import GPT2Tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def tok() -> GPT2Tokenizer:
    return GPT2Tokenizer.from_pretrained("gpt2")


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _tricky_text(seed: int, n: int = 3000) -> str:
    # Whitespace runs, CRLF, multi-byte characters, contractions, special tokens: the places
    # where a careless chunk boundary changes the BPE tokens.
    pieces = [
        "a",
        "bc",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\n\n\n",
        "\t",
        "\r\n",
        "é",
        "日本",
        "'s",
        "'ll",
        "<|endoftext|>",
        "1",
        "23",
        "!",
        " x",
        "\u00a0",
        "🙂",
    ]
    rng = random.Random(seed)
    return "".join(rng.choice(pieces) for _ in range(n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_ids_equal_whole_text_encode(tmp_path, tok, seed):
    text = _tricky_text(seed)
    path = _write(tmp_path / "c.txt", text)
    shards = tokenize_to_shards(path, tok, chunk_bytes=37, batch_chunks=3, progress=False)
    assert shards.tokens(0, shards.num_tokens).tolist() == tok.encode(text)


def test_real_corpus_multiple_shards(tmp_path, tok):
    text = (
        SHAKESPEARE.read_text("utf-8")[:200_000] if SHAKESPEARE.exists() else _tricky_text(9, 20000)
    )
    path = _write(tmp_path / "shakespeare.txt", text)
    shards = tokenize_to_shards(path, tok, shard_tokens=10_000, chunk_bytes=8192, progress=False)
    expected = tok.encode(text)
    assert shards.num_tokens == len(expected)
    assert len(shards.files) == -(-len(expected) // 10_000)
    assert shards.tokens(0, shards.num_tokens).tolist() == expected
    header = read_shard_header(shards.files[0])
    assert header["dtype"] == "uint16" and header["num_tokens"] == 10_000
    assert header["tokenizer"] == tokenizer_fingerprint(tok)
    assert shards.files[0].stat().st_size == HEADER_BYTES + 2 * 10_000


def test_second_call_is_skipped(tmp_path, tok, monkeypatch, caplog):
    path = _write(tmp_path / "c.txt", "Hello there.\nGeneral Kenobi.\n" * 20)
    first = tokenize_to_shards(path, tok, progress=False)
    mtime = first.files[0].stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("re-tokenized a fresh corpus")

    monkeypatch.setattr(text_shards, "_encode_batch", boom)
    with caplog.at_level(logging.INFO, logger="gpt2kit"):
        again = tokenize_to_shards(path, tok, progress=False)
    assert "reusing" in caplog.text
    assert again.num_tokens == first.num_tokens
    assert again.files[0].stat().st_mtime_ns == mtime
    # A new modification time with the same bytes is still fresh (the content hash agrees).
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert tokenize_to_shards(path, tok, progress=False).num_tokens == first.num_tokens


def test_changed_source_is_retokenized(tmp_path, tok):
    path = _write(tmp_path / "c.txt", "aaaa bbbb\n")
    tokenize_to_shards(path, tok, progress=False)
    _write(path, "cccc dddd\n")  # same size, new content
    os.utime(path, ns=(1, 1))
    shards = tokenize_to_shards(path, tok, progress=False)
    assert shards.tokens(0, shards.num_tokens).tolist() == tok.encode("cccc dddd\n")
    _write(path, "short\n")
    with pytest.raises(DataError, match="stale: the source size changed"):
        tokenize_to_shards(path, tok, progress=False, on_mismatch="error")


def test_other_tokenizer_mismatch(tmp_path, tok):
    path = _write(tmp_path / "c.txt", "hello <tag> world\n")
    tokenize_to_shards(path, tok, progress=False)
    other = GPT2Tokenizer.from_pretrained("gpt2")
    other.add_tokens(["<tag>"])
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
    with pytest.raises(DataError, match="different tokenizer"):
        tokenize_to_shards(path, other, progress=False, on_mismatch="error")
    shards = tokenize_to_shards(path, other, progress=False)
    assert shards.tokens(0, shards.num_tokens).tolist() == other.encode("hello <tag> world\n")
    assert shards.tokenizer == tokenizer_fingerprint(other)


def test_corrupt_shard_is_detected(tmp_path, tok):
    path = _write(tmp_path / "c.txt", "one two three\n")
    shards = tokenize_to_shards(path, tok, progress=False)
    with open(shards.files[0], "ab") as f:
        f.write(b"\x00\x00")
    with pytest.raises(DataError, match="does not match the index"):
        TokenShards.open(shards.directory)
    assert tokenize_to_shards(path, tok, progress=False).num_tokens == len(
        tok.encode("one two three\n")
    )


def test_not_utf8_names_the_line(tmp_path, tok):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\nsecond\nbad \xff byte\nlast\n")
    with pytest.raises(DataError, match=r"bad.txt:3: .*not UTF-8"):
        tokenize_to_shards(path, tok, progress=False)
    shards = tokenize_to_shards(path, tok, progress=False, on_error="skip")
    assert shards.skipped_lines == 1
    assert shards.tokens(0, shards.num_tokens).tolist() == tok.encode("good line\nsecond\nlast\n")


def test_empty_file_is_an_error(tmp_path, tok):
    path = _write(tmp_path / "empty.txt", "")
    with pytest.raises(DataError, match="empty"):
        tokenize_to_shards(path, tok, progress=False)


def test_safe_split_points():
    assert last_safe_split("ab\ncd") == 3
    assert last_safe_split("ab\n\ncd") == -1  # "\n\n" is one token: never split inside it
    assert last_safe_split("ab\n cd") == -1  # " cd" belongs with the space
    assert last_safe_split("a\nb\n\n") == 2


def test_blocks_split_and_cross_shards(tmp_path, tok):
    text = _tricky_text(5, 2000)
    path = _write(tmp_path / "c.txt", text)
    shards = tokenize_to_shards(path, tok, shard_tokens=97, progress=False)
    ids = np.array(tok.encode(text))
    n = len(ids)
    train = BlockDataset(shards, 32, split="train", validation_fraction=0.1)
    val = BlockDataset(shards, 32, split="validation", validation_fraction=0.1)
    cut = n - round(n * 0.1)
    assert len(train) == (cut - 32) // 32 + 1 and len(val) == (n - cut - 32) // 32 + 1
    for i in range(len(train)):
        item = train[i]
        assert item["input_ids"].dtype == torch.long
        assert item["input_ids"].tolist() == ids[i * 32 : i * 32 + 32].tolist()
        assert torch.equal(item["labels"], item["input_ids"])
    assert val[0]["input_ids"].tolist() == ids[cut : cut + 32].tolist()
    assert val.block_start(len(val) - 1) + 32 <= n
    with pytest.raises(IndexError):
        train[len(train)]


def test_random_blocks_reproducible_and_picklable(tmp_path, tok):
    path = _write(tmp_path / "c.txt", _tricky_text(6, 1500))
    shards = tokenize_to_shards(path, tok, progress=False)
    a = BlockDataset(shards, 16, split="all", num_samples=20, seed=3)
    b = BlockDataset(shards.directory, 16, split="all", num_samples=20, seed=3)
    assert len(a) == 20
    assert all(torch.equal(a[i]["input_ids"], b[i]["input_ids"]) for i in range(20))
    a[0]  # opens the memory maps
    blob = pickle.dumps(a)
    assert len(blob) < 10_000  # the maps are reopened, not copied, in DataLoader workers
    assert torch.equal(pickle.loads(blob)[5]["input_ids"], a[5]["input_ids"])
    loader = torch.utils.data.DataLoader(a, batch_size=4)
    assert next(iter(loader))["input_ids"].shape == (4, 16)


def test_block_size_larger_than_split_is_an_error(tmp_path, tok):
    path = _write(tmp_path / "c.txt", "tiny text\n")
    shards = tokenize_to_shards(path, tok, progress=False)
    with pytest.raises(ValueError, match="fewer than block_size"):
        BlockDataset(shards, 64)


def test_prefix_space_tokenizer_is_refused(tmp_path):
    path = _write(tmp_path / "c.txt", "a\nb\n")
    with pytest.raises(ValueError, match="add_prefix_space=False"):
        tokenize_to_shards(
            path, GPT2Tokenizer.from_pretrained("gpt2", add_prefix_space=True), progress=False
        )
