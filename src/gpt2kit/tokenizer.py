"""GPT-2 byte-level BPE tokenizer, offline by default and interchangeable with Hugging Face's.

Why this module exists: every gpt2kit head (LM, classification, QA, tagging) needs the
same tokenizer, it must work with no network (the GPT-2 vocabulary ships inside the
package under ``assets/gpt2``), and its saved folders must load back in
``transformers.AutoTokenizer``. It is a thin layer over the Rust ``tokenizers`` library:
``tokenizers`` does the byte-level BPE; this module adds the GPT-2 conventions (one
``<|endoftext|>`` token serving as BOS, EOS, UNK and, by default, padding), padding and
truncation done in plain Python so no call mutates shared backend state, and the
familiar Hugging Face method names. ``torch`` is imported only when tensors are asked for.

Pipeline (the same as Hugging Face's ``gpt2`` ``tokenizer.json``):

* ``models.BPE`` over the 50257-entry vocabulary and 50000 merges;
* ``pre_tokenizers.ByteLevel(add_prefix_space=..., use_regex=True)``, whose regex is
  ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``;
* ``decoders.ByteLevel()``; ``processors.ByteLevel(trim_offsets=...)`` (adds no tokens).

Agreement with OpenAI's encoder: the reference is tiktoken's ``gpt2`` encoding, whose
pattern is ``'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``
(the same alternatives, also case sensitive, so ``"I'M"`` splits as ``I``, ``'``, ``M``).
We found no difference between the two: probes of every non-surrogate code point
(U+0000..U+10FFFF) in letter, digit, apostrophe and whitespace contexts, 200k random
strings mixing ASCII, Unicode whitespace and arbitrary code points, and 26 MB of real
text (11.8M tokens) all gave identical ids; ``tests/test_tokenizer.py`` keeps checking
this with Hypothesis. So we use the stock ``ByteLevel(use_regex=True)`` pre-tokenizer
rather than a custom ``Split``, which also keeps saved files loadable everywhere.

``<|endoftext|>`` inside text: by default the literal string becomes id 50256, exactly
like Hugging Face's GPT-2 tokenizer and tiktoken with ``allowed_special="all"``. That is
what you want for prepared training text, but untrusted input (user prompts, scraped
pages) can then inject a document boundary. Pass ``split_special_tokens=True`` (to the
constructor, or per call to :meth:`GPT2Tokenizer.encode` / ``__call__``) to encode special
tokens as ordinary text, like tiktoken with ``disallowed_special=()``.

Example:
    >>> from gpt2kit.tokenizer import GPT2Tokenizer
    >>> tok = GPT2Tokenizer.from_pretrained("gpt2")
    >>> tok.encode("Hello world")
    [15496, 995]
    >>> tok.decode([15496, 995])
    'Hello world'
"""

from __future__ import annotations

import json
import logging
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BatchEncoding", "GPT2Tokenizer", "OPENAI_GPT2_NAMES"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
TextInput = str | Sequence[str] | Sequence[Sequence[str]]
PaddingArg = bool | Literal["longest", "max_length", "do_not_pad"]
TruncationArg = bool | Literal["longest_first", "only_first", "only_second", "do_not_truncate"]

EOT = "<|endoftext|>"
"""GPT-2's single special token (id 50256): end of text, also used as BOS, UNK and pad."""

ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "gpt2"
"""Folder with the shipped ``vocab.json`` and ``merges.txt`` (see scripts/make_gpt2_vocab.py)."""

OPENAI_GPT2_NAMES = frozenset(
    {
        "gpt2",
        "gpt2-medium",
        "gpt2-large",
        "gpt2-xl",
        "distilgpt2",
        "openai-community/gpt2",
        "openai-community/gpt2-medium",
        "openai-community/gpt2-large",
        "openai-community/gpt2-xl",
        "distilbert/distilgpt2",
    }
)
"""Model names that share OpenAI's GPT-2 vocabulary and load the shipped files offline."""

_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
_ALLOWED_SPECIAL_KEYS = (*_SPECIAL_KEYS, "additional_special_tokens")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
_PADDING_VALUES = "False, True, 'longest', 'max_length' or 'do_not_pad'"
_TRUNCATION_VALUES = (
    "False, True, 'longest_first', 'only_first', 'only_second' or 'do_not_truncate'"
)


# --------------------------------------------------------------------------- outputs
class BatchEncoding(dict):  # type: ignore[type-arg]
    """Result of :meth:`GPT2Tokenizer.__call__`: a ``dict`` with attribute access.

    Why a dict: models take ``**batch`` directly, and code written for Hugging Face's
    ``BatchEncoding`` keeps working (``batch["input_ids"]``, ``batch.input_ids``,
    ``batch.word_ids(0)``, ``batch.to("cuda")``). Keys are ``input_ids``, then
    ``attention_mask`` / ``offset_mapping`` / ``token_type_ids`` when requested.
    Values are ``list[int]`` for one text, ``list[list[int]]`` for a batch, or tensors.

    Example:
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> enc = GPT2Tokenizer()(["a b", "c"], padding=True)
        >>> enc.attention_mask
        [[1, 1], [1, 0]]
        >>> enc.word_ids(1)
        [0, None]
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        word_ids: list[list[int | None]] | None = None,
        sequence_ids: list[list[int | None]] | None = None,
        tokens: list[list[str | None]] | None = None,
        is_batched: bool = True,
    ) -> None:
        super().__init__(data)
        self._word_ids = word_ids or []
        self._sequence_ids = sequence_ids or []
        self._tokens = tokens or []
        self.is_batched = is_batched

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"BatchEncoding has no field {name!r}; fields are {sorted(self)}"
            ) from None

    def _row(self, table: list[list[Any]], batch_index: int, what: str) -> list[Any]:
        if not table:
            raise ValueError(f"this BatchEncoding carries no {what}")
        try:
            return list(table[batch_index])
        except IndexError:
            raise IndexError(
                f"batch_index {batch_index} out of range for a batch of {len(table)}"
            ) from None

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Word index of each token in sequence ``batch_index``; ``None`` for padding.

        With ``is_split_into_words=True`` the index is the position in the word list;
        for plain text it is the index of the pre-token (regex piece). In a pair, word
        indices restart at 0 in the second text (see :meth:`sequence_ids`).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer()(["Hello", "tokenizers"], is_split_into_words=True).word_ids()
            [0, 1, 1]
        """
        return self._row(self._word_ids, batch_index, "word ids")

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """0 for tokens of the first text, 1 for the second of a pair, ``None`` for padding.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer()("a", text_pair=" b").sequence_ids()
            [0, 1]
        """
        return self._row(self._sequence_ids, batch_index, "sequence ids")

    def tokens(self, batch_index: int = 0) -> list[str | None]:
        """Byte-level token strings of sequence ``batch_index`` (``None`` for padding).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer()("Hello world").tokens()
            ['Hello', 'Ġworld']
        """
        return self._row(self._tokens, batch_index, "tokens")

    def to(self, device: str | torch.device) -> BatchEncoding:
        """Move every tensor value to ``device`` in place and return ``self``.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer()("hi", return_tensors="pt").to("cpu")["input_ids"].shape
            torch.Size([1, 1])
        """
        for key, value in self.items():
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device)
        return self


@dataclass
class _Seq:
    """One tokenized text (before pairing, truncation and padding)."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    tokens: list[str]
    seq_ids: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def cut(self, keep: int, side: str) -> _Seq:
        if keep >= len(self.ids):
            return self
        sl = slice(0, keep) if side == "right" else slice(len(self.ids) - keep, len(self.ids))
        return _Seq(
            self.ids[sl], self.offsets[sl], self.word_ids[sl], self.tokens[sl], self.seq_ids[sl]
        )


# --------------------------------------------------------------------------- helpers
def _token_content(value: Any) -> str | None:
    """Special-token value from a config: ``str``, ``AddedToken``, ``{"content": ...}`` or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, AddedToken):
        return value.content
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"cannot read a special token from {value!r}")


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _to_int_list(ids: Any, what: str) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    if not isinstance(ids, Iterable) or isinstance(ids, (str, bytes)):
        raise TypeError(f"{what} must be an int or a sequence of ints, got {type(ids).__name__}")
    out = []
    for x in ids:
        try:
            out.append(operator.index(x))
        except TypeError:
            raise TypeError(
                f"{what} must be a flat sequence of ints, found {type(x).__name__} "
                "(use batch_decode for a batch of sequences)"
            ) from None
    return out


# --------------------------------------------------------------------------- tokenizer
class GPT2Tokenizer:
    """OpenAI's GPT-2 tokenizer (byte-level BPE, 50257 tokens) with a Hugging Face-style API.

    Why its own class rather than ``transformers.GPT2TokenizerFast``: gpt2kit must not
    depend on ``transformers`` at runtime, must load offline from the shipped files, and
    should never truncate silently. Where the names overlap, behaviour follows Hugging
    Face's GPT-2 tokenizer, with these deliberate differences:

    * ``pad_token`` defaults to ``<|endoftext|>`` (pad = EOS; the attention mask, not the
      id, tells padding apart), so ``padding=True`` works out of the box.
    * ``truncation`` is off unless asked for, and ``max_length`` alone never truncates.
    * ``decode`` never "cleans up" spaces, so ``decode(encode(s)) == s`` for any ``s``.
    * ``is_split_into_words=True`` puts a space before every word except the first
      (the first gets one only with ``add_prefix_space=True``), so ``["Hello", "world"]``
      encodes like ``"Hello world"``.

    Args:
        vocab_file: ``vocab.json`` (token string -> id). With ``merges_file``; when neither
            nor ``tokenizer_file``/``tokenizer_object`` is given, the shipped GPT-2 files.
        merges_file: ``merges.txt`` (``#version`` header then one merge per line).
        tokenizer_file: a ``tokenizer.json`` to load instead of vocab/merges.
        tokenizer_object: an already built ``tokenizers.Tokenizer`` (byte-level BPE); a copy
            is used, with GPT-2's decoder and post-processor.
        add_prefix_space: add a space before the text, so its first word is encoded like
            any later word. GPT-2 was trained without it; leave False unless you know.
        trim_offsets: offsets exclude the leading/trailing spaces a token carries
            (``" world"`` maps to ``"world"``), which is what QA answer spans and tagging
            want. With False, ``text[s:e]`` is exactly the token's text.
        bos_token: beginning-of-sequence token (GPT-2: ``<|endoftext|>``).
        eos_token: end-of-sequence token (GPT-2: ``<|endoftext|>``).
        unk_token: kept for compatibility; byte-level BPE never produces unknowns.
        pad_token: padding token, ``<|endoftext|>`` by default; ``None`` forbids padding.
        additional_special_tokens: more special tokens to register (added if missing).
        padding_side: ``"right"`` (default) or ``"left"`` (for batched generation).
        truncation_side: ``"right"`` (default, keep the start) or ``"left"`` (keep the end).
        model_max_length: context size of the model (1024 for GPT-2). Used as the
            default ``max_length`` when truncating or padding to ``"max_length"``.
        split_special_tokens: encode special-token strings found in text as plain text.
        name_or_path: where it came from, for ``repr`` only.

    Example:
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> tok = GPT2Tokenizer()
        >>> tok.vocab_size, tok.eos_token_id, tok.pad_token_id
        (50257, 50256, 50256)
        >>> batch = tok(["Hi", "Hello there"], padding=True, padding_side="left")
        >>> batch["input_ids"]
        [[50256, 17250], [15496, 612]]
        >>> batch["attention_mask"]
        [[0, 1], [1, 1]]
    """

    def __init__(
        self,
        vocab_file: PathLike | None = None,
        merges_file: PathLike | None = None,
        *,
        tokenizer_file: PathLike | None = None,
        tokenizer_object: Tokenizer | None = None,
        add_prefix_space: bool = False,
        trim_offsets: bool = True,
        bos_token: str | None = EOT,
        eos_token: str | None = EOT,
        unk_token: str | None = EOT,
        pad_token: str | None = EOT,
        additional_special_tokens: Sequence[str] = (),
        padding_side: str = "right",
        truncation_side: str = "right",
        model_max_length: int = 1024,
        split_special_tokens: bool = False,
        name_or_path: str = "",
    ) -> None:
        sources = [tokenizer_object is not None, tokenizer_file is not None]
        sources.append(vocab_file is not None or merges_file is not None)
        if sum(sources) > 1:
            raise ValueError(
                "pass only one of tokenizer_object, tokenizer_file, or vocab_file+merges_file"
            )
        if (vocab_file is None) != (merges_file is None):
            raise ValueError("vocab_file and merges_file must be given together")

        if tokenizer_object is not None:
            backend = Tokenizer.from_str(tokenizer_object.to_str())  # never mutate the caller's
        elif tokenizer_file is not None:
            backend = self._load_tokenizer_json(Path(tokenizer_file))
        else:
            if vocab_file is None:
                vocab_file, merges_file = _shipped_files()
                name_or_path = name_or_path or "gpt2"
            assert merges_file is not None
            backend = Tokenizer(models.BPE.from_file(os.fspath(vocab_file), os.fspath(merges_file)))
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(
                add_prefix_space=add_prefix_space, use_regex=True
            )

        self._backend: Tokenizer = backend
        self._alt_backend: Tokenizer | None = None  # same pipeline, opposite special-token mode
        self._add_prefix_space = bool(add_prefix_space)
        self._trim_offsets = bool(trim_offsets)
        self._configure_pipeline()

        self._special: dict[str, str | None] = dict.fromkeys(_SPECIAL_KEYS)
        self._additional_special: list[str] = []
        self._split_special_tokens = False
        self.name_or_path = str(name_or_path)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = model_max_length
        self._warned_long = False

        named = dict(
            bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token
        )
        self.add_special_tokens({k: v for k, v in named.items() if v is not None})
        self.add_special_tokens({"additional_special_tokens": list(additional_special_tokens)})
        self.split_special_tokens = split_special_tokens

    # ------------------------------------------------------------------ construction
    def _configure_pipeline(self) -> None:
        """Install GPT-2's pre-tokenizer (if byte-level), decoder and post-processor."""
        backend = self._backend
        pre = backend.pre_tokenizer
        if pre is None or isinstance(pre, pre_tokenizers.ByteLevel):
            use_regex = True if pre is None else bool(getattr(pre, "use_regex", True))
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(
                add_prefix_space=self._add_prefix_space, use_regex=use_regex
            )
        backend.decoder = decoders.ByteLevel()
        old_post = backend.post_processor
        if old_post is not None and not isinstance(old_post, processors.ByteLevel):
            logger.warning(
                "replacing post-processor %s: GPT-2 adds no special tokens around text",
                type(old_post).__name__,
            )
        backend.post_processor = processors.ByteLevel(
            add_prefix_space=self._add_prefix_space, trim_offsets=self._trim_offsets
        )
        self._alt_backend = None

    @staticmethod
    def _load_tokenizer_json(path: Path) -> Tokenizer:
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer_file {path} does not exist")
        data = json.loads(path.read_text(encoding="utf-8"))
        model_type = data.get("model", {}).get("type", "BPE")
        if model_type != "BPE":
            raise ValueError(
                f"{path} holds a {model_type} tokenizer; GPT2Tokenizer needs byte-level BPE"
            )
        return Tokenizer.from_file(os.fspath(path))

    @classmethod
    def from_files(
        cls, vocab_file: PathLike, merges_file: PathLike, **kwargs: Any
    ) -> GPT2Tokenizer:
        """Build from a ``vocab.json`` and a ``merges.txt``.

        Args:
            vocab_file: JSON map of byte-level token string -> id.
            merges_file: BPE merges, one ``"left right"`` pair per line in rank order.
            **kwargs: any other constructor argument (``pad_token``, ``padding_side``...).

        Example:
            >>> from gpt2kit.tokenizer import ASSETS_DIR, GPT2Tokenizer
            >>> tok = GPT2Tokenizer.from_files(ASSETS_DIR / "vocab.json", ASSETS_DIR / "merges.txt")
            >>> len(tok)
            50257
        """
        return cls(vocab_file, merges_file, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: PathLike,
        *,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> GPT2Tokenizer:
        """Load a tokenizer by model name, local folder, or Hugging Face Hub id.

        Resolution order: an existing local folder; one of :data:`OPENAI_GPT2_NAMES`
        (``"gpt2"``, ``"gpt2-medium"``, ``"gpt2-large"``, ``"gpt2-xl"``, ``"distilgpt2"``,
        with or without their ``openai-community/`` / ``distilbert/`` owners), which load
        the shipped files with no network; otherwise a Hub repo id, from which only the
        tokenizer files are downloaded with ``huggingface_hub.hf_hub_download``.

        A folder is read from ``tokenizer.json`` if present, else ``vocab.json`` +
        ``merges.txt``; ``tokenizer_config.json`` and ``special_tokens_map.json``, when
        present, supply special tokens, ``padding_side``, ``add_prefix_space`` and
        ``model_max_length``. A ``null``/missing pad token falls back to the EOS token.

        Args:
            name_or_path: model name, folder path or Hub repo id.
            revision: Hub branch, tag or commit.
            cache_dir: Hub cache folder.
            local_files_only: only use the Hub cache; never touch the network.
            token: Hub token for private repos.
            **kwargs: constructor arguments that override the saved configuration.

        Raises:
            FileNotFoundError: a local path that does not exist, or a folder without
                tokenizer files.
            OSError: the Hub could not be reached (no network) or the repo/files are
                missing there.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer.from_pretrained("gpt2", padding_side="left")
            >>> tok.padding_side, tok.model_max_length
            ('left', 1024)
        """
        name = os.fspath(name_or_path)
        path = Path(name).expanduser()
        if path.is_dir():
            files = {n: path / n for n in (*_TOKENIZER_FILES, *_CONFIG_FILES)}
            files = {n: p for n, p in files.items() if p.is_file()}
            if "tokenizer.json" not in files and not {"vocab.json", "merges.txt"} <= set(files):
                raise FileNotFoundError(
                    f"{path} has no tokenizer.json and no vocab.json + merges.txt; "
                    "save one with GPT2Tokenizer.save_pretrained(folder) or use 'gpt2'"
                )
            return cls._from_file_map(files, name, kwargs)
        if name in OPENAI_GPT2_NAMES:
            kwargs.setdefault("name_or_path", name)
            return cls(**kwargs)
        looks_local = (
            name.startswith((".", "/", "~"))
            or os.sep in name.replace("/", "")
            or name.count("/") > 1
            or path.suffix in {".json", ".txt"}
        )
        if looks_local:
            raise FileNotFoundError(
                f"no such tokenizer folder: {name!r}. Pass a folder holding tokenizer.json "
                "or vocab.json + merges.txt, or a GPT-2 name such as 'gpt2'"
            )
        files = _download_from_hub(
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        return cls._from_file_map(files, name, kwargs)

    @classmethod
    def _from_file_map(
        cls, files: Mapping[str, Path], name: str, overrides: Mapping[str, Any]
    ) -> GPT2Tokenizer:
        config = _read_json(files.get("tokenizer_config.json"))
        special_map = _read_json(files.get("special_tokens_map.json"))
        settings: dict[str, Any] = {}
        for key in ("padding_side", "truncation_side", "add_prefix_space", "trim_offsets"):
            if config.get(key) is not None:
                settings[key] = config[key]
        if config.get("split_special_tokens") is not None:
            settings["split_special_tokens"] = bool(config["split_special_tokens"])
        max_len = config.get("model_max_length")
        if isinstance(max_len, (int, float)) and 0 < max_len < 1e12:
            settings["model_max_length"] = int(max_len)
        for source in (config, special_map):  # special_tokens_map.json wins, as in HF
            for key in _SPECIAL_KEYS:
                if source.get(key) is not None:
                    settings[key] = _token_content(source[key])
            extra = source.get("additional_special_tokens") or source.get("extra_special_tokens")
            if isinstance(extra, list) and extra:
                settings["additional_special_tokens"] = [_token_content(t) for t in extra]
        settings.update(overrides)
        settings.setdefault("name_or_path", name)
        settings.setdefault("pad_token", settings.get("eos_token", EOT))

        if "tokenizer.json" in files:
            tok = cls(tokenizer_file=files["tokenizer.json"], **settings)
            if "add_prefix_space" not in settings:  # take it from tokenizer.json's pipeline
                pre = json.loads(files["tokenizer.json"].read_text(encoding="utf-8")).get(
                    "pre_tokenizer"
                )
                if isinstance(pre, dict) and pre.get("type") == "ByteLevel":
                    tok._add_prefix_space = bool(pre.get("add_prefix_space", False))
                    tok._configure_pipeline()
            return tok

        tok = cls(files["vocab.json"], files["merges.txt"], **settings)
        tok._restore_added_tokens(config.get("added_tokens_decoder") or {})
        return tok

    def _restore_added_tokens(self, added: Mapping[str, Any]) -> None:
        """Re-add tokens listed in a config's ``added_tokens_decoder``, checking their ids."""
        for key in sorted(added, key=int):
            spec = added[key]
            content = _token_content(spec)
            assert content is not None
            expected = int(key)
            current = self._backend.token_to_id(content)
            is_special = bool(spec.get("special", False)) if isinstance(spec, Mapping) else False
            if current is None or is_special:
                self._add([content], special=is_special)
                current = self._backend.token_to_id(content)
            if current != expected:
                raise ValueError(
                    f"added token {content!r} got id {current}, but tokenizer_config.json "
                    f"says {expected}; the vocabulary files do not match the config"
                )

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: PathLike) -> tuple[str, ...]:
        """Write the tokenizer files that this class and ``transformers`` both load.

        Files: ``vocab.json`` and ``merges.txt`` (the base vocabulary, byte-identical to
        OpenAI's for GPT-2), ``tokenizer.json`` (full pipeline with added tokens),
        ``tokenizer_config.json`` and ``special_tokens_map.json``. The folder is created
        if needed; files are overwritten in place (no atomic swap; callers that need one
        write into a temporary folder and rename it). A ``pad_token`` of ``None`` is
        saved as ``null``, which loads back as the EOS token (the GPT-2 default).

        Args:
            save_directory: destination folder.

        Returns:
            The paths written.

        Example:
            >>> import tempfile
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> d = tempfile.mkdtemp()
            >>> _ = GPT2Tokenizer().save_pretrained(d)
            >>> GPT2Tokenizer.from_pretrained(d).encode("Hello world")
            [15496, 995]
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        full = json.loads(self._backend.to_str())
        model = full["model"]
        # Legacy "left right" merge strings load in every tokenizers release (>= 0.15);
        # byte-level tokens never contain a literal space, so this is lossless.
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        model["merges"] = merges
        vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))

        written: dict[str, str] = {
            "tokenizer.json": json.dumps(full, ensure_ascii=False, indent=2) + "\n",
            "vocab.json": json.dumps(vocab),
            "merges.txt": "\n".join(["#version: 0.2", *merges]) + "\n",
        }
        special_map: dict[str, Any] = {k: v for k, v in self._special.items() if v is not None}
        if self._additional_special:
            special_map["additional_special_tokens"] = list(self._additional_special)
        added_decoder = {
            str(i): {
                "content": t.content,
                "lstrip": t.lstrip,
                "normalized": t.normalized,
                "rstrip": t.rstrip,
                "single_word": t.single_word,
                "special": t.special,
            }
            for i, t in sorted(self._backend.get_added_tokens_decoder().items())
        }
        config: dict[str, Any] = {
            "tokenizer_class": "GPT2Tokenizer",
            "add_prefix_space": self._add_prefix_space,
            "add_bos_token": False,
            "add_eos_token": False,
            "added_tokens_decoder": added_decoder,
            **{k: self._special[k] for k in _SPECIAL_KEYS},
            "clean_up_tokenization_spaces": False,
            "errors": "replace",
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "split_special_tokens": self._split_special_tokens,
            "trim_offsets": self._trim_offsets,
        }
        if self._additional_special:
            config["additional_special_tokens"] = list(self._additional_special)
        written["tokenizer_config.json"] = json.dumps(config, ensure_ascii=False, indent=2) + "\n"
        written["special_tokens_map.json"] = (
            json.dumps(special_map, ensure_ascii=False, indent=2) + "\n"
        )
        paths = []
        for name, text in written.items():
            p = out / name
            p.write_text(text, encoding="utf-8", newline="\n")
            paths.append(str(p))
        return tuple(paths)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_alt_backend"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _set_encode_special(self._backend, self._split_special_tokens)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        """Number of ids, added tokens included (the embedding rows a model needs)."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, len={len(self)}, "
            f"pad_token={self.pad_token!r}, padding_side={self.padding_side!r}, "
            f"model_max_length={self.model_max_length}, add_prefix_space={self._add_prefix_space})"
        )

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (shared; do not enable padding on it)."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without tokens added later (50257 for GPT-2)."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    @property
    def add_prefix_space(self) -> bool:
        """Whether a space is put before the text (fixed at construction)."""
        return self._add_prefix_space

    @property
    def trim_offsets(self) -> bool:
        """Whether offsets leave out the spaces a token carries (fixed at construction)."""
        return self._trim_offsets

    def _special_id(self, key: str) -> int | None:
        token = self._special[key]
        return None if token is None else self._backend.token_to_id(token)

    @property
    def eos_token(self) -> str | None:
        """End-of-sequence token string (``<|endoftext|>``)."""
        return self._special["eos_token"]

    @property
    def eos_token_id(self) -> int | None:
        """End-of-sequence id (50256)."""
        return self._special_id("eos_token")

    @property
    def bos_token(self) -> str | None:
        """Beginning-of-sequence token string (``<|endoftext|>``, same as EOS in GPT-2)."""
        return self._special["bos_token"]

    @property
    def bos_token_id(self) -> int | None:
        """Beginning-of-sequence id (50256)."""
        return self._special_id("bos_token")

    @property
    def unk_token(self) -> str | None:
        """Unknown token string; never produced by byte-level BPE."""
        return self._special["unk_token"]

    @property
    def unk_token_id(self) -> int | None:
        """Unknown token id."""
        return self._special_id("unk_token")

    @property
    def pad_token(self) -> str | None:
        """Padding token string; EOS by default, ``None`` to forbid padding.

        Setting it requires a token already in the vocabulary; to add a new one use
        ``add_special_tokens({"pad_token": ...})`` (and resize the model's embeddings).
        """
        return self._special["pad_token"]

    @pad_token.setter
    def pad_token(self, value: str | None) -> None:
        if value is not None and self._backend.token_to_id(value) is None:
            raise ValueError(
                f"pad_token {value!r} is not in the vocabulary; use "
                f"add_special_tokens({{'pad_token': {value!r}}}) to add it, or "
                "tok.pad_token = tok.eos_token for GPT-2's usual pad = EOS"
            )
        self._special["pad_token"] = value

    @property
    def pad_token_id(self) -> int | None:
        """Padding id (50256 by default, equal to EOS; masks tell padding apart)."""
        return self._special_id("pad_token")

    @pad_token_id.setter
    def pad_token_id(self, value: int | None) -> None:
        self.pad_token = None if value is None else self.convert_ids_to_tokens(value)

    @property
    def additional_special_tokens(self) -> list[str]:
        """Special tokens registered besides the named ones."""
        return list(self._additional_special)

    @property
    def all_special_tokens(self) -> list[str]:
        """Every distinct special token string (named and additional)."""
        seen = [t for t in self._special.values() if t is not None] + self._additional_special
        return list(dict.fromkeys(seen))

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of :attr:`all_special_tokens`."""
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    @property
    def padding_side(self) -> str:
        """``"right"`` (default) or ``"left"``; per call override with ``padding_side=``."""
        return self._padding_side

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        if value not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {value!r}")
        self._padding_side = value

    @property
    def truncation_side(self) -> str:
        """``"right"`` drops tokens from the end (default), ``"left"`` from the start."""
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, value: str) -> None:
        if value not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {value!r}")
        self._truncation_side = value

    @property
    def model_max_length(self) -> int:
        """Model context size; default ``max_length`` for truncation and max_length padding."""
        return self._model_max_length

    @model_max_length.setter
    def model_max_length(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"model_max_length must be a positive int, got {value!r}")
        self._model_max_length = value

    @property
    def split_special_tokens(self) -> bool:
        """If True, special-token strings in text are encoded as ordinary text."""
        return self._split_special_tokens

    @split_special_tokens.setter
    def split_special_tokens(self, value: bool) -> None:
        value = bool(value)
        _set_encode_special(self._backend, value)
        self._split_special_tokens = value
        self._alt_backend = None

    def _backend_for(self, split_special_tokens: bool | None) -> Tokenizer:
        if split_special_tokens is None or bool(split_special_tokens) == self._split_special_tokens:
            return self._backend
        if self._alt_backend is None:
            alt = Tokenizer.from_str(self._backend.to_str())
            _set_encode_special(alt, bool(split_special_tokens))
            self._alt_backend = alt
        return self._alt_backend

    # ------------------------------------------------------------------ vocabulary
    def get_vocab(self) -> dict[str, int]:
        """Map of every token string (added ones included) to its id.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().get_vocab()["Ġworld"]
            995
        """
        return self._backend.get_vocab(with_added_tokens=True)

    def _add(self, tokens: Sequence[str], special: bool) -> int:
        before = len(self)
        objs = [AddedToken(t, special=special, normalized=not special) for t in tokens]
        if special:
            self._backend.add_special_tokens(objs)
        else:
            self._backend.add_tokens(objs)
        self._alt_backend = None
        return len(self) - before

    def add_tokens(self, new_tokens: str | Sequence[str], special_tokens: bool = False) -> int:
        """Add tokens that are matched whole in text before BPE.

        Args:
            new_tokens: one token or a list of them.
            special_tokens: register them as special (skipped by
                ``decode(skip_special_tokens=True)``).

        Returns:
            How many new ids were created; resize the model's embeddings to ``len(tok)``.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.add_tokens(["<|user|>"])
            1
            >>> tok.encode("<|user|>hi")
            [50257, 5303]
        """
        tokens = [new_tokens] if isinstance(new_tokens, str) else list(new_tokens)
        for t in tokens:
            if not isinstance(t, str) or not t:
                raise ValueError(f"new_tokens must be non-empty strings, got {t!r}")
        added = self._add(tokens, special=special_tokens)
        if special_tokens:
            for t in tokens:
                if t not in self.all_special_tokens:
                    self._additional_special.append(t)
        return added

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any]) -> int:
        """Set named special tokens, adding any that are not in the vocabulary yet.

        Args:
            special_tokens_dict: keys among ``bos_token``, ``eos_token``, ``unk_token``,
                ``pad_token`` (a string each) and ``additional_special_tokens`` (a list).

        Returns:
            How many new ids were created; resize the model's embeddings to ``len(tok)``.

        Raises:
            ValueError: for another key, e.g. ``cls_token`` (GPT-2 has no such role).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.add_special_tokens({"pad_token": "<|pad|>"})
            1
            >>> tok.pad_token_id, tok.eos_token_id
            (50257, 50256)
        """
        unknown = set(special_tokens_dict) - set(_ALLOWED_SPECIAL_KEYS)
        if unknown:
            raise ValueError(
                f"add_special_tokens got unsupported keys {sorted(unknown)}; allowed: "
                f"{list(_ALLOWED_SPECIAL_KEYS)} (other tokens go in additional_special_tokens)"
            )
        added = 0
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                extra = [_token_content(v) for v in value]
                strs = [t for t in extra if t]
                added += self._add(strs, special=True)
                for t in strs:
                    if t not in self._additional_special:
                        self._additional_special.append(t)
                continue
            token = _token_content(value)
            if token is not None:
                if not token:
                    raise ValueError(f"{key} must be a non-empty string")
                added += self._add([token], special=True)
            self._special[key] = token
        return added

    def convert_ids_to_tokens(
        self, ids: int | Sequence[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Byte-level token strings for ids (a spaced word shows as ``"Ġword"``).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().convert_ids_to_tokens([15496, 995])
            ['Hello', 'Ġworld']
        """
        single = isinstance(ids, int)
        id_list = self._check_ids(_to_int_list(ids, "ids"))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        tokens = [self._backend.id_to_token(i) for i in id_list if i not in special]
        if single:
            return tokens[0] if tokens else ""
        return [t for t in tokens if t is not None]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Ids of byte-level token strings.

        Raises:
            KeyError: for a string that is not a token (encode text with ``encode``).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().convert_tokens_to_ids(["Hello", "Ġworld"])
            [15496, 995]
        """
        single = isinstance(tokens, str)
        out = []
        for t in [tokens] if single else tokens:
            i = self._backend.token_to_id(t)
            if i is None:
                raise KeyError(
                    f"{t!r} is not a token of this vocabulary (tokens are byte-level strings "
                    "such as 'Ġworld'; use encode() for text)"
                )
            out.append(i)
        return out[0] if single else out

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Join byte-level token strings back into text.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().convert_tokens_to_string(["Hello", "Ġworld"])
            'Hello world'
        """
        decoder = self._backend.decoder
        assert decoder is not None
        return decoder.decode(list(tokens))

    # ------------------------------------------------------------------ encode / decode
    def encode(
        self,
        text: str,
        add_special_tokens: bool = False,
        *,
        split_special_tokens: bool | None = None,
    ) -> list[int]:
        """Token ids of one text; never truncates.

        Args:
            text: the text.
            add_special_tokens: accepted for Hugging Face compatibility; GPT-2 wraps text
                in no special tokens, so it changes nothing. Append ``eos_token_id``
                yourself to separate documents.
            split_special_tokens: override the tokenizer's setting for this call; True
                encodes ``"<|endoftext|>"`` in ``text`` as plain text.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.encode("a<|endoftext|>")
            [64, 50256]
            >>> tok.encode("a<|endoftext|>", split_special_tokens=True)
            [64, 27, 91, 437, 1659, 5239, 91, 29]
        """
        if not isinstance(text, str):
            raise TypeError(
                f"encode() takes one str, got {type(text).__name__}; use tok(texts) for a batch"
            )
        del add_special_tokens  # GPT-2 has no template
        ids = self._backend_for(split_special_tokens).encode(text).ids
        self._maybe_warn_long(len(ids))
        return ids

    def _check_ids(self, ids: list[int]) -> list[int]:
        n = len(self)
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside this vocabulary (0..{n - 1})")
        return ids

    def decode(
        self, token_ids: int | Sequence[int] | Any, skip_special_tokens: bool = False
    ) -> str:
        """Text of a sequence of ids (bytes that are not valid UTF-8 become U+FFFD).

        Args:
            token_ids: ids as a list, a 1-D tensor/array, or a single int.
            skip_special_tokens: drop special tokens (EOS/pad and added special tokens).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.decode([15496, 995, 50256])
            'Hello world<|endoftext|>'
            >>> tok.decode([15496, 995, 50256], skip_special_tokens=True)
            'Hello world'
        """
        ids = self._check_ids(_to_int_list(token_ids, "token_ids"))
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(
        self, sequences: Sequence[Sequence[int]] | Any, skip_special_tokens: bool = False
    ) -> list[str]:
        """Decode each sequence of ids (a list of lists or a 2-D tensor/array).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().batch_decode([[15496], [995, 50256]], skip_special_tokens=True)
            ['Hello', ' world']
        """
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        rows = [self._check_ids(_to_int_list(s, "sequences[i]")) for s in sequences]
        return self._backend.decode_batch(rows, skip_special_tokens=skip_special_tokens)

    def _maybe_warn_long(self, n: int) -> None:
        if n > self._model_max_length and not self._warned_long:
            self._warned_long = True
            logger.warning(
                "a sequence of %d tokens is longer than model_max_length=%d; it is kept "
                "whole (pass truncation=True to cut it, or chunk it before the model)",
                n,
                self._model_max_length,
            )

    # ------------------------------------------------------------------ __call__
    def __call__(
        self,
        text: TextInput,
        text_pair: TextInput | None = None,
        *,
        padding: PaddingArg = False,
        truncation: TruncationArg = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: Literal["pt", "np"] | None = None,
        return_attention_mask: bool = True,
        return_offsets_mapping: bool = False,
        return_token_type_ids: bool = False,
        is_split_into_words: bool = False,
        padding_side: str | None = None,
        add_special_tokens: bool = True,
        split_special_tokens: bool | None = None,
    ) -> BatchEncoding:
        """Tokenize one text or a batch (optionally paired), with padding and truncation.

        Args:
            text: a string, or a list of strings (batch). With
                ``is_split_into_words=True``: a list of words, or a list of such lists.
            text_pair: second texts, same shape as ``text``; GPT-2 simply concatenates
                the pair (see ``sequence_ids``/``token_type_ids`` to tell them apart).
            padding: ``False``/``"do_not_pad"``; ``True``/``"longest"`` (to the longest
                in the batch); ``"max_length"`` (to ``max_length``, else
                ``model_max_length``). Pads with ``pad_token_id``; attention mask is 0 there.
            truncation: ``False`` (default, never truncates, even past
                ``model_max_length``); ``True``/``"longest_first"`` (for pairs, trims the
                longer text first, splitting like ``tokenizers``); ``"only_first"``; ``"only_second"``. Cuts to
                ``max_length``, else ``model_max_length``, from ``truncation_side``.
            max_length: length limit for truncation and for ``padding="max_length"``.
            pad_to_multiple_of: round padded length up to a multiple of this.
            return_tensors: ``None`` for lists, ``"pt"`` for torch tensors, ``"np"`` for
                numpy arrays. Tensors always have a batch dimension.
            return_attention_mask: include ``attention_mask`` (1 = real token).
            return_offsets_mapping: include ``offset_mapping``: ``(start, end)`` character
                offsets into the original string (into each word for split input);
                ``(0, 0)`` for padding.
            return_token_type_ids: include ``token_type_ids`` (0 first text, 1 second).
            is_split_into_words: input is already split into words (see class docs).
            padding_side: ``"left"``/``"right"`` for this call only.
            add_special_tokens: accepted for compatibility; GPT-2 adds none.
            split_special_tokens: encode special-token strings as text for this call.

        Returns:
            A :class:`BatchEncoding`.

        Raises:
            ValueError: bad ``padding``/``truncation``/``return_tensors`` values, padding
                without a pad token, or tensors requested for unequal lengths.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> enc = tok(["Hello world", "Hi"], padding=True, return_tensors="pt")
            >>> enc["input_ids"].tolist(), enc["attention_mask"].tolist()
            ([[15496, 995], [17250, 50256]], [[1, 1], [1, 0]])
            >>> tok("Hello world", truncation=True, max_length=1)["input_ids"]
            [15496]
        """
        del add_special_tokens  # GPT-2 has no template
        pad_mode = _check_padding(padding)
        trunc_mode = _check_truncation(truncation)
        side = self._padding_side if padding_side is None else padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if pad_to_multiple_of is not None and (
            not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0
        ):
            raise ValueError(
                f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}"
            )
        pad_id = self.pad_token_id
        if pad_mode is not None and pad_id is None:
            raise ValueError(
                f"padding={padding!r} needs a pad token, but pad_token is None. Set "
                "tok.pad_token = tok.eos_token (GPT-2 convention; attention_mask marks the "
                "padding) or tok.add_special_tokens({'pad_token': '<|pad|>'}) and resize "
                "the model's embeddings, or call with padding=False"
            )

        batched, firsts = _as_batch(text, is_split_into_words, "text")
        seconds: list[Any] | None = None
        if text_pair is not None:
            pair_batched, seconds = _as_batch(text_pair, is_split_into_words, "text_pair")
            if pair_batched != batched or len(seconds) != len(firsts):
                raise ValueError(
                    "text_pair must have the same shape as text: one pair, or a list of "
                    f"the same length (got {len(firsts)} texts and {len(seconds)} pairs)"
                )

        backend = self._backend_for(split_special_tokens)
        seqs_a = self._encode_many(backend, firsts, is_split_into_words, 0)
        seqs_b = (
            self._encode_many(backend, seconds, is_split_into_words, 1)
            if seconds is not None
            else None
        )

        limit = max_length if max_length is not None else self._model_max_length
        rows: list[_Seq] = []
        for i, a in enumerate(seqs_a):
            b = seqs_b[i] if seqs_b is not None else None
            if trunc_mode is not None:
                a, b = self._truncate(a, b, limit, trunc_mode)
            row = a if b is None else _concat(a, b)
            if trunc_mode is None:
                self._maybe_warn_long(len(row))
            rows.append(row)

        target: int | None = None
        if pad_mode == "longest":
            target = max((len(r) for r in rows), default=0)
        elif pad_mode == "max_length":
            target = limit
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of

        data: dict[str, list[Any]] = {"input_ids": []}
        if return_attention_mask:
            data["attention_mask"] = []
        if return_token_type_ids:
            data["token_type_ids"] = []
        if return_offsets_mapping:
            data["offset_mapping"] = []
        word_ids, seq_ids, tokens = [], [], []
        for r in rows:
            n_pad = max(0, target - len(r)) if target is not None else 0
            mask = [1] * len(r)
            types = [s or 0 for s in r.seq_ids]
            ids, offsets = r.ids, list(r.offsets)
            w, s = list(r.word_ids), list(r.seq_ids)
            t: list[str | None] = list(r.tokens)
            if n_pad:
                assert pad_id is not None
                pads = [pad_id] * n_pad
                nones: list[Any] = [None] * n_pad
                zeros = [0] * n_pad
                pad_tok = [self.pad_token] * n_pad
                if side == "right":
                    ids, mask, types = ids + pads, mask + zeros, types + zeros
                    offsets = offsets + [(0, 0)] * n_pad
                    w, s, t = w + nones, s + nones, t + pad_tok
                else:
                    ids, mask, types = pads + ids, zeros + mask, zeros + types
                    offsets = [(0, 0)] * n_pad + offsets
                    w, s, t = nones + w, nones + s, pad_tok + t
            data["input_ids"].append(ids)
            if return_attention_mask:
                data["attention_mask"].append(mask)
            if return_token_type_ids:
                data["token_type_ids"].append(types)
            if return_offsets_mapping:
                data["offset_mapping"].append(offsets)
            word_ids.append(w)
            seq_ids.append(s)
            tokens.append(t)

        out: dict[str, Any]
        if return_tensors is not None:
            lengths = sorted({len(x) for x in data["input_ids"]})
            if len(lengths) > 1:
                raise ValueError(
                    f"return_tensors={return_tensors!r} needs sequences of one length, got "
                    f"lengths {lengths[0]}..{lengths[-1]}; pass padding=True (or "
                    "padding='max_length' with truncation=True), or return_tensors=None"
                )
            out = {k: _to_tensor(v, return_tensors) for k, v in data.items()}
        elif batched:
            out = data
        else:
            out = {k: v[0] for k, v in data.items()}
        return BatchEncoding(
            out, word_ids=word_ids, sequence_ids=seq_ids, tokens=tokens, is_batched=batched
        )

    def _encode_many(
        self, backend: Tokenizer, items: list[Any], split_words: bool, seq_id: int
    ) -> list[_Seq]:
        if not items:
            return []
        if not split_words:
            encodings = backend.encode_batch(items)
            return [
                _Seq(e.ids, e.offsets, list(e.word_ids), e.tokens, [seq_id] * len(e.ids))
                for e in encodings
            ]
        # Put the space GPT-2 saw between words before every word but the first (the
        # first gets one from the pre-tokenizer only if add_prefix_space=True).
        prepared, prefixed = [], []
        for words in items:
            flags = [i > 0 and bool(w) and not w.startswith(" ") for i, w in enumerate(words)]
            prepared.append([" " + w if f else w for w, f in zip(words, flags)])
            prefixed.append(flags)
        encodings = backend.encode_batch(prepared, is_pretokenized=True)
        seqs = []
        for e, flags in zip(encodings, prefixed):
            word_ids = list(e.word_ids)
            offsets = [
                (max(s - 1, 0), max(t - 1, 0)) if w is not None and flags[w] else (s, t)
                for (s, t), w in zip(e.offsets, word_ids)
            ]
            seqs.append(_Seq(e.ids, offsets, word_ids, e.tokens, [seq_id] * len(e.ids)))
        return seqs

    def _truncate(self, a: _Seq, b: _Seq | None, limit: int, mode: str) -> tuple[_Seq, _Seq | None]:
        side = self._truncation_side
        if b is None:
            if mode == "only_second":
                raise ValueError("truncation='only_second' needs text_pair")
            return a.cut(limit, side), None
        la, lb = len(a), len(b)
        if la + lb <= limit:
            return a, b
        if mode == "only_first":
            if lb >= limit:
                raise ValueError(
                    f"truncation='only_first' cannot fit max_length={limit}: the second "
                    f"text alone has {lb} tokens; use truncation='longest_first'"
                )
            return a.cut(limit - lb, side), b
        if mode == "only_second":
            if la >= limit:
                raise ValueError(
                    f"truncation='only_second' cannot fit max_length={limit}: the first "
                    f"text alone has {la} tokens; use truncation='longest_first'"
                )
            return a, b.cut(limit - la, side)
        # longest_first, split as the Rust tokenizers library does (so ids match
        # transformers): the shorter text keeps min(its length, max_length // 2) tokens
        # and the longer text gets the rest.
        if la <= lb:
            keep_a = min(la, limit // 2)
            keep_b = limit - keep_a
        else:
            keep_b = min(lb, limit // 2)
            keep_a = limit - keep_b
        return a.cut(keep_a, side), b.cut(keep_b, side)


# --------------------------------------------------------------------------- module helpers
def _shipped_files() -> tuple[Path, Path]:
    vocab, merges = ASSETS_DIR / "vocab.json", ASSETS_DIR / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        raise FileNotFoundError(
            f"the bundled GPT-2 vocabulary is missing from {ASSETS_DIR}; reinstall gpt2kit "
            "or regenerate it with scripts/make_gpt2_vocab.py"
        )
    return vocab, merges


def _set_encode_special(backend: Tokenizer, value: bool) -> None:
    if not hasattr(backend, "encode_special_tokens"):
        if value:
            raise RuntimeError(
                "split_special_tokens=True needs tokenizers>=0.16 (Tokenizer.encode_special_tokens)"
            )
        return
    backend.encode_special_tokens = value


def _check_padding(padding: Any) -> str | None:
    if padding is False or padding == "do_not_pad":
        return None
    if padding is True or padding == "longest":
        return "longest"
    if padding == "max_length":
        return "max_length"
    raise ValueError(f"padding must be one of {_PADDING_VALUES}; got {padding!r}")


def _check_truncation(truncation: Any) -> str | None:
    if truncation is False or truncation == "do_not_truncate":
        return None
    if truncation is True or truncation == "longest_first":
        return "longest_first"
    if truncation in ("only_first", "only_second"):
        return str(truncation)
    raise ValueError(f"truncation must be one of {_TRUNCATION_VALUES}; got {truncation!r}")


def _as_batch(value: Any, split_words: bool, name: str) -> tuple[bool, list[Any]]:
    """Return ``(is_batched, items)``; items are strings, or word lists when split."""
    if not split_words:
        if isinstance(value, str):
            return False, [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return True, list(value)
        hint = (
            " (a list of words? pass is_split_into_words=True)"
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple))
            else ""
        )
        raise TypeError(f"{name} must be a str or a list of str{hint}; got {_describe(value)}")
    if isinstance(value, str):
        raise ValueError(
            f"is_split_into_words=True expects {name} as a list of words (or a batch of such "
            "lists), got a str; split it first or pass is_split_into_words=False"
        )
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return False, [list(value)]
        if all(isinstance(v, (list, tuple)) and all(isinstance(w, str) for w in v) for v in value):
            return True, [list(v) for v in value]
    raise TypeError(
        f"with is_split_into_words=True, {name} must be a list of str or a list of lists of "
        f"str; got {_describe(value)}"
    )


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value:
        return f"{type(value).__name__} of {type(value[0]).__name__}"
    return type(value).__name__


def _concat(a: _Seq, b: _Seq) -> _Seq:
    return _Seq(
        a.ids + b.ids,
        a.offsets + b.offsets,
        a.word_ids + b.word_ids,
        a.tokens + b.tokens,
        a.seq_ids + b.seq_ids,
    )


def _to_tensor(rows: list[Any], kind: str) -> Any:
    if kind == "pt":
        import torch

        return torch.tensor(rows, dtype=torch.long)
    import numpy as np

    return np.asarray(rows, dtype=np.int64)


def _download_from_hub(
    repo_id: str,
    *,
    revision: str | None,
    cache_dir: PathLike | None,
    local_files_only: bool,
    token: str | bool | None,
) -> dict[str, Path]:
    """Fetch only the tokenizer files of a Hub repo; clear errors when offline."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise OSError(
            f"{repo_id!r} is not a local folder and huggingface_hub is not installed; "
            "pass a local folder with tokenizer.json or vocab.json + merges.txt"
        ) from e

    offline_help = (
        f"could not get the tokenizer of {repo_id!r} from the Hugging Face Hub "
        "(no network, offline mode, or not in the cache). Pass a local folder holding "
        "tokenizer.json or vocab.json + merges.txt instead (for example one written by "
        "save_pretrained), or 'gpt2' for the bundled GPT-2 vocabulary"
    )

    def fetch(filename: str) -> Path | None:
        try:
            return Path(
                hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                    token=token,
                )
            )
        except LocalEntryNotFoundError as e:
            raise OSError(offline_help) from e
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            raise OSError(
                f"{repo_id!r} is neither a local folder nor a Hub repo we can read "
                f"(revision={revision!r}): {e}. Pass a local folder instead"
            ) from e
        except EntryNotFoundError:
            return None
        except ValueError as e:  # malformed repo id
            raise OSError(
                f"{repo_id!r} is not a local folder and not a valid Hub repo id ({e})"
            ) from e
        except OSError as e:  # connection errors (requests/httpx) are OSErrors
            raise OSError(f"{offline_help}: {e}") from e

    files: dict[str, Path] = {}
    first = fetch("tokenizer.json")
    if first is not None:
        files["tokenizer.json"] = first
    else:
        for name in ("vocab.json", "merges.txt"):
            p = fetch(name)
            if p is None:
                raise OSError(
                    f"Hub repo {repo_id!r} has no tokenizer.json and no {name}; it is not a "
                    "byte-level BPE (GPT-2 style) tokenizer"
                )
            files[name] = p
    for name in _CONFIG_FILES:
        p = fetch(name)
        if p is not None:
            files[name] = p
    return files
