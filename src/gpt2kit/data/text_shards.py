"""Language-modeling corpora of any size: tokenize once into memory-mapped token shards.

`tokenize_to_shards(path, tokenizer)` streams a UTF-8 text file in chunks, tokenizes it (with
a tqdm progress bar) and writes the ids as raw `uint16` (`uint32` for vocabularies past
65,536) into shard files of at most `shard_tokens` tokens. Each shard starts with a
1,024-byte header (magic line + JSON: dtype, token count, tokenizer fingerprint, source
identity), so a shard is self-describing; `index.json`, written last and atomically, lists
the shards. Calling it again with the same file and tokenizer skips the work: the index is
fresh when the source has the same size and modification time (or, if only the time
changed, the same SHA-256), and the tokenizer the same fingerprint (hash of its vocabulary,
merges, added tokens and pre-tokenizer). A stale index is re-tokenized (default) or is a
`DataError` (`on_mismatch="error"`).

Chunks split only after a newline that follows a non-space character and precedes one: the
GPT-2 pre-tokenizer (`... |\\s+(?!\\S)|\\s+`) never joins characters across such a point, so
the shards hold exactly `tokenizer.encode(whole_text)` while memory stays bounded by the
chunk size. (Splitting at any newline would not: `"\\n\\n\\n"` is `"\\n\\n"` + `"\\n"` whole
but could become `"\\n"` + `"\\n\\n"` in pieces.)

`BlockDataset(shards, block_size)` serves fixed-length blocks (`input_ids` = `labels`, the
LM heads shift them) straight from the memory maps, so memory does not grow with the
corpus; `split="train"`/`"validation"` holds out the last `validation_fraction` of tokens.

Example:
    >>> import tempfile, os
    >>> from gpt2kit.tokenizer import GPT2Tokenizer
    >>> tok = GPT2Tokenizer.from_pretrained("gpt2")
    >>> path = os.path.join(tempfile.mkdtemp(), "corpus.txt")
    >>> _ = open(path, "w").write("Hello world.\\nSecond line here.\\n" * 50)
    >>> shards = tokenize_to_shards(path, tok, progress=False)
    >>> shards.num_tokens == len(tok.encode(open(path).read()))
    True
    >>> train = BlockDataset(shards, block_size=16, split="train", validation_fraction=0.1)
    >>> train[0]["input_ids"].shape, len(train)
    (torch.Size([16]), 25)
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .readers import DataError

logger = logging.getLogger("gpt2kit")

MAGIC = b"GPT2KIT-TOKENS v1\n"
HEADER_BYTES = 1024
INDEX_NAME = "index.json"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------
# Tokenizer identity and encoding
# ------------------------------------------------------------------------------------------


def _backend(tokenizer: Any) -> Any:
    """The `tokenizers.Tokenizer` behind a `GPT2Tokenizer` (or the tokenizer itself)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "to_str"):
        backend = tokenizer
    return backend


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A SHA-256 of the tokenizer's full serialization (vocabulary, merges, added tokens,
    pre-tokenizer) and of whether special-token strings in text become special tokens.

    Hashing the serialized string (not a parsed, canonical form) keeps this fast (~0.2 s for
    GPT-2); a new `tokenizers` release that serializes differently costs one re-tokenize.

    Example:
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> len(tokenizer_fingerprint(GPT2Tokenizer.from_pretrained("gpt2")))
        64
    """
    backend = _backend(tokenizer)
    digest = hashlib.sha256()
    if backend is not None:
        digest.update(backend.to_str().encode("utf-8"))
        digest.update(repr(getattr(backend, "encode_special_tokens", None)).encode())
    elif hasattr(tokenizer, "get_vocab"):
        vocab = sorted(tokenizer.get_vocab().items())
        digest.update(
            json.dumps([type(tokenizer).__name__, vocab], ensure_ascii=False).encode("utf-8")
        )
    else:
        raise TypeError(
            f"cannot fingerprint a {type(tokenizer).__name__}; pass a gpt2kit GPT2Tokenizer or a "
            "tokenizers.Tokenizer"
        )
    return digest.hexdigest()


def _check_no_prefix_space(tokenizer: Any) -> None:
    backend = _backend(tokenizer)
    pre = getattr(backend, "pre_tokenizer", None)
    state = pre.__getstate__() if pre is not None else b""
    if getattr(tokenizer, "add_prefix_space", False) or b'"add_prefix_space":true' in state:
        raise ValueError(
            "the tokenizer adds a prefix space to every text, so chunks would not tokenize like "
            "the whole file; load it with add_prefix_space=False for corpus tokenization"
        )


def _encode_batch(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    backend = _backend(tokenizer)
    if backend is not None:
        # One Rust call: the texts are encoded in parallel.
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [list(tokenizer.encode(t)) for t in texts]


def _vocab_size(tokenizer: Any) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return _backend(tokenizer).get_vocab_size(with_added_tokens=True)


# ------------------------------------------------------------------------------------------
# Shards on disk
# ------------------------------------------------------------------------------------------


def _write_header(f: Any, header: dict[str, Any]) -> None:
    body = MAGIC + json.dumps(header, sort_keys=True).encode("utf-8") + b"\n"
    if len(body) > HEADER_BYTES:
        raise ValueError(f"shard header is {len(body)} bytes; the limit is {HEADER_BYTES}")
    f.seek(0)
    f.write(body.ljust(HEADER_BYTES, b" "))


def read_shard_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of one shard file; `DataError` if it is not a gpt2kit token shard.

    Example:
        >>> read_shard_header("missing.bin")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        DataError: missing.bin: not readable
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as err:
        raise DataError(
            f"not readable ({err.strerror})", path, None, "re-run tokenize_to_shards"
        ) from err
    if not raw.startswith(MAGIC) or len(raw) < HEADER_BYTES:
        raise DataError(
            "not a gpt2kit token shard (bad magic or short header)",
            path,
            None,
            "re-run tokenize_to_shards",
        )
    try:
        return json.loads(raw[len(MAGIC) :].decode("utf-8").strip())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            "corrupt shard header", path, None, "delete the folder and re-run tokenize_to_shards"
        ) from err


@dataclass
class TokenShards:
    """Token shards of one corpus, opened lazily as read-only memory maps.

    Attributes:
        directory: the folder holding `index.json` and the shards.
        files: shard paths in order.
        counts: tokens per shard.
        dtype: `uint16` or `uint32`.
        tokenizer: the tokenizer fingerprint the ids belong to.
        source: `{"path", "size", "mtime_ns", "sha256"}` of the text file.
        skipped_lines: lines dropped as not UTF-8 by the tokenize call that returned this.
    """

    directory: Path
    files: list[Path]
    counts: list[int]
    dtype: str
    tokenizer: str
    source: dict[str, Any]
    skipped_lines: int = 0
    _maps: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def num_tokens(self) -> int:
        return int(sum(self.counts))

    @classmethod
    def open(cls, directory: str | os.PathLike) -> TokenShards:
        """Read `index.json` and check every shard's header and size against it.

        Example:
            >>> TokenShards.open("no-such-folder")  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            DataError: no-such-folder/index.json: no token index
        """
        directory = Path(directory)
        index_path = directory / INDEX_NAME
        try:
            index = json.loads(index_path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(
                "no token index", index_path, None, "run tokenize_to_shards(path, tokenizer)"
            ) from err
        if index.get("version") != FORMAT_VERSION:
            raise DataError(
                f"format version {index.get('version')!r}, expected {FORMAT_VERSION}",
                index_path,
                None,
                "re-run tokenize_to_shards",
            )
        files = [directory / name for name in index["shards"]]
        itemsize = np.dtype(index["dtype"]).itemsize
        for i, (path, count) in enumerate(zip(files, index["counts"])):
            header = read_shard_header(path)
            expected = {
                "dtype": index["dtype"],
                "num_tokens": count,
                "tokenizer": index["tokenizer"],
                "shard": i,
            }
            got = {k: header.get(k) for k in expected}
            if got != expected or path.stat().st_size != HEADER_BYTES + count * itemsize:
                raise DataError(
                    f"shard does not match the index (header {got}, size {path.stat().st_size})",
                    path,
                    None,
                    "delete the folder and re-run tokenize_to_shards",
                )
        return cls(
            directory,
            files,
            list(index["counts"]),
            index["dtype"],
            index["tokenizer"],
            index["source"],
        )

    def arrays(self) -> list[np.ndarray]:
        """One read-only `np.memmap` per shard (opened on first use, in each process)."""
        if self._maps is None:
            self._maps = [
                np.memmap(path, dtype=self.dtype, mode="r", offset=HEADER_BYTES, shape=(count,))
                if count
                else np.zeros(0, dtype=self.dtype)
                for path, count in zip(self.files, self.counts)
            ]
        return self._maps

    def tokens(self, start: int, end: int) -> np.ndarray:
        """Tokens `[start, end)` of the corpus as an int64 array (copied; may span shards).

        Example:
            >>> import tempfile, os
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> p = os.path.join(tempfile.mkdtemp(), "c.txt")
            >>> _ = open(p, "w").write("Hello world")
            >>> tokenize_to_shards(p, GPT2Tokenizer.from_pretrained("gpt2"), progress=False).tokens(0, 2).tolist()
            [15496, 995]
        """
        if not 0 <= start <= end <= self.num_tokens:
            raise IndexError(f"tokens [{start}, {end}) outside the corpus of {self.num_tokens}")
        out = np.empty(end - start, dtype=np.int64)
        filled, offset = 0, 0
        for array, count in zip(self.arrays(), self.counts):
            lo, hi = max(start, offset), min(end, offset + count)
            if lo < hi:
                out[filled : filled + hi - lo] = array[lo - offset : hi - offset]
                filled += hi - lo
            offset += count
            if offset >= end:
                break
        return out

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps would pickle as full copies; DataLoader workers reopen them instead.
        state = self.__dict__.copy()
        state["_maps"] = None
        return state


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def default_shard_dir(path: str | os.PathLike) -> Path:
    """Where shards of `path` go by default: `<path>.gpt2kit-tokens/` beside it, or under
    `$GPT2KIT_CACHE` (default `~/.cache/gpt2kit`)/`tokens/` when that folder is read-only.

    Example:
        >>> default_shard_dir("/tmp/corpus.txt").name
        'corpus.txt.gpt2kit-tokens'
    """
    path = Path(path)
    if os.access(path.resolve().parent, os.W_OK):
        return path.parent / f"{path.name}.gpt2kit-tokens"
    root = Path(os.environ.get("GPT2KIT_CACHE", Path.home() / ".cache" / "gpt2kit"))
    tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return root / "tokens" / f"{path.name}-{tag}"


def _stale_reason(
    directory: Path, path: Path, fingerprint: str, verify_content: bool
) -> str | None:
    """Why the shards in `directory` do not hold `path` tokenized with this tokenizer (or None)."""
    try:
        shards = TokenShards.open(directory)
    except DataError as err:
        return str(err)
    if shards.tokenizer != fingerprint:
        return "they were made with a different tokenizer"
    now = _file_identity(path)
    if now["size"] != shards.source.get("size"):
        return f"the source size changed ({shards.source.get('size')} -> {now['size']} bytes)"
    # An unchanged size and time count as unchanged content unless asked to verify.
    changed_time = now["mtime_ns"] != shards.source.get("mtime_ns")
    if (verify_content or changed_time) and _sha256(path) != shards.source.get("sha256"):
        return "the source content changed"
    return None


# ------------------------------------------------------------------------------------------
# Tokenizing a file
# ------------------------------------------------------------------------------------------


def last_safe_split(text: str, lo: int = 0) -> int:
    """The last index `i > lo` where `text[:i]` and `text[i:]` tokenize independently (a
    newline with a non-space before and after it); `-1` if there is none.

    Example:
        >>> last_safe_split("a\\nb\\n\\nc")
        2
    """
    p = text.rfind("\n")
    while p > lo:
        if p + 1 < len(text) and not text[p - 1].isspace() and not text[p + 1].isspace():
            return p + 1
        p = text.rfind("\n", 0, p)
    return -1


class _ShardWriter:
    """Appends ids to shard files of at most `shard_tokens` tokens each (written to a temp
    folder that becomes the final one only when complete)."""

    def __init__(
        self, directory: Path, dtype: str, shard_tokens: int, header: dict[str, Any]
    ) -> None:
        self.directory, self.dtype, self.limit, self.header = (
            directory,
            np.dtype(dtype),
            shard_tokens,
            header,
        )
        self.files: list[str] = []
        self.counts: list[int] = []
        self._f: Any = None

    def _open(self) -> None:
        name = f"shard_{len(self.files):05d}.bin"
        self.files.append(name)
        self.counts.append(0)
        self._f = open(self.directory / name, "w+b")  # noqa: SIM115 (closed in _close)
        _write_header(self._f, {**self.header, "shard": len(self.files) - 1, "num_tokens": 0})
        self._f.seek(HEADER_BYTES)

    def _close(self) -> None:
        if self._f is not None:
            _write_header(
                self._f,
                {**self.header, "shard": len(self.files) - 1, "num_tokens": self.counts[-1]},
            )
            self._f.close()
            self._f = None

    def write(self, ids: list[int]) -> None:
        array = np.asarray(ids, dtype=self.dtype)
        while array.size:
            if self._f is None or self.counts[-1] >= self.limit:
                self._close()
                self._open()
            room = self.limit - self.counts[-1]
            part, array = array[:room], array[room:]
            part.tofile(self._f)
            self.counts[-1] += int(part.size)

    def finish(self) -> None:
        if self._f is None:
            self._open()  # an empty corpus still gets one (empty) shard
        self._close()


def tokenize_to_shards(
    path: str | os.PathLike,
    tokenizer: Any,
    out_dir: str | os.PathLike | None = None,
    shard_tokens: int = 100_000_000,
    chunk_bytes: int = 1 << 20,
    batch_chunks: int = 8,
    progress: bool = True,
    on_mismatch: str = "retokenize",
    on_error: str = "raise",
    verify_content: bool = False,
) -> TokenShards:
    """Tokenize a UTF-8 text file into memory-mapped token shards, or reuse fresh ones.

    Args:
        path: the text file.
        tokenizer: a `GPT2Tokenizer` (or `tokenizers.Tokenizer`) without prefix space.
        out_dir: the shard folder; default `default_shard_dir(path)`.
        shard_tokens: tokens per shard file (100M = 200 MB of uint16).
        chunk_bytes: bytes read per step; memory use is a few times `chunk_bytes *
            batch_chunks`.
        batch_chunks: chunks encoded together (in parallel, in Rust).
        progress: show a tqdm bar over the bytes read.
        on_mismatch: existing shards that do not match the file or tokenizer:
            `"retokenize"` them (logged), or `"error"` (`DataError`).
        on_error: lines that are not UTF-8: `"raise"` a `DataError` naming the line, or
            `"skip"` them (counted and logged).
        verify_content: also compare the source's SHA-256 when size and time are unchanged.

    Returns:
        The `TokenShards`.

    Example:
        >>> import tempfile, os
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> p = os.path.join(tempfile.mkdtemp(), "c.txt")
        >>> _ = open(p, "w").write("one two\\n")
        >>> tokenize_to_shards(p, GPT2Tokenizer.from_pretrained("gpt2"), progress=False).num_tokens
        3
    """
    from tqdm.auto import tqdm

    if on_mismatch not in ("retokenize", "error"):
        raise ValueError(f"on_mismatch={on_mismatch!r}; use 'retokenize' or 'error'")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; use 'raise' or 'skip'")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    directory = Path(out_dir) if out_dir is not None else default_shard_dir(path)
    fingerprint = tokenizer_fingerprint(tokenizer)
    if (directory / INDEX_NAME).exists():
        reason = _stale_reason(directory, path, fingerprint, verify_content)
        if reason is None:
            logger.info("%s: reusing the token shards in %s", path, directory)
            return TokenShards.open(directory)
        if on_mismatch == "error":
            raise DataError(
                f"the token shards in {directory} are stale: {reason}",
                path,
                None,
                "pass on_mismatch='retokenize', or delete the folder",
            )
        logger.info("%s: re-tokenizing into %s because %s", path, directory, reason)
    _check_no_prefix_space(tokenizer)

    identity = _file_identity(path)
    if identity["size"] == 0:
        raise DataError("the file is empty", path, None, "pass a non-empty text file")
    dtype = "uint16" if _vocab_size(tokenizer) <= 1 << 16 else "uint32"
    header = {
        "version": FORMAT_VERSION,
        "dtype": dtype,
        "tokenizer": fingerprint,
        "source": identity,
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    writer = _ShardWriter(tmp, dtype, shard_tokens, header)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    skipped, line_no, carry_bytes, carry_text, pending = 0, 0, b"", "", []

    def decode(block: bytes, first_line: int, final: bool) -> str:
        nonlocal skipped
        try:
            return decoder.decode(block, final)
        except UnicodeDecodeError as err:
            bad_line = first_line + block[: err.start].count(b"\n")
            if on_error == "raise":
                raise DataError(
                    f"bytes {block[err.start : err.end]!r} are not UTF-8",
                    path,
                    bad_line,
                    "re-encode the file as UTF-8, or pass on_error='skip' to drop such lines",
                ) from err
        decoder.reset()
        lines = []
        for offset, raw in enumerate(block.splitlines(keepends=True)):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skipped += 1
                logger.debug("%s:%d: skipped a line that is not UTF-8", path, first_line + offset)
        return "".join(lines)

    def flush() -> None:
        for ids in _encode_batch(tokenizer, pending):
            writer.write(ids)
        pending.clear()

    try:
        with (
            open(path, "rb") as f,
            tqdm(
                total=identity["size"],
                unit="B",
                unit_scale=True,
                desc=f"tokenizing {path.name}",
                disable=not progress,
            ) as bar,
        ):
            while True:
                block = f.read(chunk_bytes)
                at_end = not block
                digest.update(block)
                bar.update(len(block))
                data = carry_bytes + block
                # Decode whole lines only, so a multi-byte character is never cut in two.
                cut = len(data) if at_end else data.rfind(b"\n") + 1
                carry_bytes = data[cut:]
                text = carry_text + decode(data[:cut], line_no + 1, at_end)
                line_no += data[:cut].count(b"\n")
                split = len(text) if at_end else last_safe_split(text, max(0, len(carry_text) - 2))
                if split > 0:
                    pending.append(text[:split])
                    text = text[split:]
                carry_text = text
                if len(pending) >= batch_chunks or at_end:
                    flush()
                if at_end:
                    break
        writer.finish()
        header_source = {**identity, "sha256": digest.hexdigest()}
        index = {
            "version": FORMAT_VERSION,
            "dtype": dtype,
            "tokenizer": fingerprint,
            "source": header_source,
            "shards": writer.files,
            "counts": writer.counts,
            "num_tokens": int(sum(writer.counts)),
        }
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=1), "utf-8")
        if directory.exists():
            _remove_shard_dir(directory)
        os.replace(tmp, directory)
    except BaseException:
        _remove_shard_dir(tmp)
        raise
    if skipped:
        logger.warning("%s: skipped %d lines that are not UTF-8 (on_error='skip')", path, skipped)
    shards = TokenShards.open(directory)
    shards.skipped_lines = skipped
    logger.info(
        "%s: %d tokens in %d shards at %s", path, shards.num_tokens, len(shards.files), directory
    )
    return shards


def _remove_shard_dir(directory: Path) -> None:
    # Remove only what this module writes, never an arbitrary folder the user pointed at.
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.name == INDEX_NAME or (child.name.startswith("shard_") and child.suffix == ".bin"):
            child.unlink()
    try:
        directory.rmdir()
    except OSError as err:
        raise DataError(
            "the folder holds files that are not token shards, so it was not replaced",
            directory,
            None,
            "pass an empty or dedicated out_dir",
        ) from err


# ------------------------------------------------------------------------------------------
# Blocks for training
# ------------------------------------------------------------------------------------------


class BlockDataset(Dataset):
    """Fixed-length blocks of a token corpus, read from memory-mapped shards.

    Args:
        shards: `TokenShards`, or a shard folder.
        block_size: tokens per block (at most the model's `n_positions`).
        split: `"train"` (the first `1 - validation_fraction` of tokens), `"validation"`
            (the rest) or `"all"`.
        validation_fraction: share of tokens held out at the end of the corpus.
        stride: distance between block starts (default `block_size`: no overlap).
        num_samples: serve this many blocks at random offsets instead (item i is the same
            block for the same `seed`, so runs and resumes are reproducible).
        seed: seed for `num_samples`.

    Items are `{"input_ids": LongTensor[block_size], "labels": the same}`.

    Example:
        >>> import tempfile, os
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> p = os.path.join(tempfile.mkdtemp(), "c.txt")
        >>> _ = open(p, "w").write("word " * 100)
        >>> shards = tokenize_to_shards(p, GPT2Tokenizer.from_pretrained("gpt2"), progress=False)
        >>> len(BlockDataset(shards, 10, split="all")), len(BlockDataset(shards, 10, num_samples=5))
        (10, 5)
    """

    def __init__(
        self,
        shards: TokenShards | str | os.PathLike,
        block_size: int,
        split: str = "train",
        validation_fraction: float = 0.1,
        stride: int | None = None,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        self.shards = shards if isinstance(shards, TokenShards) else TokenShards.open(shards)
        if block_size < 1:
            raise ValueError(f"block_size={block_size}; use a positive number of tokens")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction={validation_fraction}; use a value in [0, 1)")
        n = self.shards.num_tokens
        cut = n - int(round(n * validation_fraction))
        bounds = {"train": (0, cut), "validation": (cut, n), "all": (0, n)}
        if split not in bounds:
            raise ValueError(f"split={split!r}; use 'train', 'validation' or 'all'")
        self.start, self.end = bounds[split]
        self.block_size, self.stride = block_size, stride or block_size
        self.num_samples, self.seed, self.split = num_samples, seed, split
        if self.end - self.start < block_size:
            raise ValueError(
                f"the {split} split has {self.end - self.start} tokens, fewer than block_size="
                f"{block_size}; use a smaller block_size or validation_fraction, or more text"
            )

    def __len__(self) -> int:
        if self.num_samples is not None:
            return self.num_samples
        return (self.end - self.start - self.block_size) // self.stride + 1

    def block_start(self, index: int) -> int:
        """Corpus offset of block `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} of {len(self)}")
        if self.num_samples is not None:
            rng = np.random.default_rng([self.seed, index])
            return self.start + int(rng.integers(0, self.end - self.start - self.block_size + 1))
        return self.start + index * self.stride

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = self.block_start(index)
        ids = torch.from_numpy(self.shards.tokens(start, start + self.block_size))
        return {"input_ids": ids, "labels": ids.clone()}
