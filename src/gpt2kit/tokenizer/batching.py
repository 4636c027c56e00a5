"""Batches: padding and truncation options, the Rust backend that applies them, ``pad``.

Why this shape: ``tokenizers`` already pads, truncates, splits pairs
(``longest_first``/``only_first``/``only_second``) and cuts overflowing windows with a
stride, in Rust and in parallel, and ``transformers``' fast tokenizer is exactly a call to
it. So we hand those jobs to it and only translate options in, and encodings out, as
``transformers`` does; ids, masks, offsets and the overflow mapping then agree by
construction. The one thing we add is safety: padding and truncation are settings *on*
a ``tokenizers.Tokenizer``, so a private copy (:class:`Worker`) holds them and a lock
makes each configure-and-encode atomic; the tokenizer a user can reach
(``backend_tokenizer``) is never left padded or truncated.

``pad`` (what ``DataCollatorWithPadding`` calls on already tokenized features) has no
Rust counterpart that takes ids, so it is plain Python with ``transformers``' rules.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from tokenizers import Encoding, Tokenizer

from .files import LARGE_INTEGER

if TYPE_CHECKING:  # pragma: no cover
    import torch

PaddingArg = bool | Literal["longest", "max_length", "do_not_pad"]
TruncationArg = (
    bool | Literal["longest_first", "only_first", "only_second", "do_not_truncate"] | None
)
_PADDING_VALUES = "False, True, 'longest', 'max_length' or 'do_not_pad'"
_TRUNCATION_VALUES = (
    "False, True, 'longest_first', 'only_first', 'only_second' or 'do_not_truncate'"
)


# --------------------------------------------------------------------------- outputs
class BatchEncoding(dict):  # type: ignore[type-arg]
    """Result of a tokenizer call: a ``dict`` with attribute access, like ``transformers``'.

    Why a dict: models take ``**batch`` directly, and code written for Hugging Face's
    ``BatchEncoding`` keeps working (``batch["input_ids"]``, ``batch.input_ids``,
    ``batch.word_ids(0)``, ``batch.sequence_ids(0)``, ``batch.to("cuda")``). Values are
    ``list[int]`` for one text, ``list[list[int]]`` for a batch, or tensors. The Rust
    encodings stay attached (``encodings``), one per row, overflow rows included.

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
        data: Mapping[str, Any] | None = None,
        encodings: Sequence[Encoding] | None = None,
        tensor_type: str | None = None,
        *,
        is_batched: bool = True,
    ) -> None:
        super().__init__(data or {})
        self._encodings = list(encodings) if encodings is not None else None
        self.is_batched = is_batched
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_encodings", "is_batched"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"BatchEncoding has no field {name!r}; fields are {sorted(self)}"
            ) from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):  # transformers: an int gives that row's Encoding
            return self._encoding(key, "encodings")
        return super().__getitem__(key)

    def __getstate__(self) -> dict[str, Any]:
        return {"data": dict(self), "encodings": self._encodings, "is_batched": self.is_batched}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state["data"])
        self._encodings = state["encodings"]
        self.is_batched = state["is_batched"]

    def __reduce__(self) -> Any:
        return (BatchEncoding, (), self.__getstate__())

    @property
    def encodings(self) -> list[Encoding] | None:
        """The ``tokenizers.Encoding`` of each row (None after ``pad``)."""
        return self._encodings

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    @property
    def n_sequences(self) -> int | None:
        """1 for single texts, 2 for pairs (None without encodings)."""
        if not self._encodings:
            return None
        return self._encodings[0].n_sequences

    def _encoding(self, batch_index: int, what: str) -> Encoding:
        if self._encodings is None:
            raise ValueError(
                f"this BatchEncoding carries no {what} (it came from pad(), not from a "
                "tokenizer call)"
            )
        try:
            return self._encodings[batch_index]
        except IndexError:
            raise IndexError(
                f"batch_index {batch_index} out of range for a batch of {len(self._encodings)}"
            ) from None

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Word index of each token in row ``batch_index``; ``None`` for padding.

        With ``is_split_into_words=True`` the index is the position in the word list;
        for plain text it is the index of the pre-token (regex piece). In a pair, word
        indices restart at 0 in the second text (see :meth:`sequence_ids`).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer()(["Hello", "tokenizers"], is_split_into_words=True).word_ids()
            [0, 1, 1]
        """
        return list(self._encoding(batch_index, "word ids").word_ids)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """0 for tokens of the first text, 1 for the second of a pair, ``None`` for padding.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer()("a", text_pair=" b").sequence_ids()
            [0, 1]
        """
        return list(self._encoding(batch_index, "sequence ids").sequence_ids)

    def tokens(self, batch_index: int = 0) -> list[str]:
        """Byte-level token strings of row ``batch_index`` (the pad token for padding).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer()("Hello world").tokens()
            ['Hello', 'Ġworld']
        """
        return list(self._encoding(batch_index, "tokens").tokens)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> Any:
        """Word of a token (``token_to_word(token)`` or ``token_to_word(row, token)``)."""
        row, tok = (
            (0, batch_or_token_index)
            if token_index is None
            else (batch_or_token_index, token_index)
        )
        return self._encoding(row, "word ids").token_to_word(tok)

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> Any:
        """``(start, end)`` token span of a word, or None."""
        row, word = (
            (0, batch_or_word_index) if word_index is None else (batch_or_word_index, word_index)
        )
        return self._encoding(row, "word ids").word_to_tokens(word, sequence_index)

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> Any:
        """Token holding a character of the text, or None."""
        row, char = (
            (0, batch_or_char_index) if char_index is None else (batch_or_char_index, char_index)
        )
        return self._encoding(row, "offsets").char_to_token(char, sequence_index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> Any:
        """``(start, end)`` characters of a token."""
        row, tok = (
            (0, batch_or_token_index)
            if token_index is None
            else (batch_or_token_index, token_index)
        )
        return self._encoding(row, "offsets").token_to_chars(tok)

    def convert_to_tensors(self, tensor_type: str | None) -> BatchEncoding:
        """Turn every list value into a ``"pt"`` or ``"np"`` tensor, in place."""
        if tensor_type is None:
            return self
        check_return_tensors(tensor_type)
        for key, value in self.items():
            if isinstance(value, (list, tuple)):
                self[key] = to_tensor(value, tensor_type, key)
        return self

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


def check_return_tensors(kind: Any) -> None:
    if kind not in (None, "pt", "np"):
        raise ValueError(f"return_tensors must be None, 'pt' or 'np', got {kind!r}")


def to_tensor(rows: Any, kind: str, key: str = "input_ids") -> Any:
    """``rows`` as an int64 (or the values' own dtype) torch tensor / numpy array."""
    lengths = sorted({len(r) for r in rows if isinstance(r, (list, tuple))})
    if len(lengths) > 1:
        raise ValueError(
            f"return_tensors={kind!r} needs sequences of one length, but {key!r} has "
            f"lengths {lengths[0]}..{lengths[-1]}; pass padding=True (or "
            "padding='max_length' with truncation=True), or return_tensors=None"
        )
    if kind == "pt":
        import torch

        try:
            return torch.tensor(rows, dtype=torch.long)
        except (TypeError, RuntimeError):
            return torch.tensor(rows)
    import numpy as np

    arr = np.asarray(rows)
    return arr.astype(np.int64) if arr.dtype.kind in "iub" else arr


# --------------------------------------------------------------------------- options
def padding_mode(padding: Any) -> str | None:
    if padding is False or padding is None or padding == "do_not_pad":
        return None
    if padding is True or padding == "longest":
        return "longest"
    if padding == "max_length":
        return "max_length"
    raise ValueError(f"padding must be one of {_PADDING_VALUES}; got {padding!r}")


def truncation_mode(truncation: Any) -> str | None:
    if truncation is False or truncation is None or truncation == "do_not_truncate":
        return None
    if truncation is True or truncation == "longest_first":
        return "longest_first"
    if truncation in ("only_first", "only_second"):
        return str(truncation)
    raise ValueError(f"truncation must be one of {_TRUNCATION_VALUES}; got {truncation!r}")


def resolve_strategies(
    padding: Any,
    truncation: Any,
    max_length: Any,
    pad_to_multiple_of: Any,
    model_max_length: int,
    *,
    max_length_truncates: bool,
) -> tuple[str | None, str | None, int | None]:
    """``(pad_mode, truncation_mode, max_length)`` by ``transformers``' rules.

    With ``max_length_truncates`` (``GPT2TokenizerFast``), ``max_length`` given without
    ``padding`` or ``truncation`` truncates, as ``transformers`` does; gpt2kit's own
    ``GPT2Tokenizer`` never truncates unless asked.
    """
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0
    ):
        raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
    if pad_to_multiple_of is not None and (
        isinstance(pad_to_multiple_of, bool)
        or not isinstance(pad_to_multiple_of, int)
        or pad_to_multiple_of <= 0
    ):
        raise ValueError(
            f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}"
        )
    if max_length_truncates and max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"
    pad = padding_mode(padding)
    trunc = truncation_mode(truncation)
    if max_length is None:
        if pad == "max_length":
            if model_max_length > LARGE_INTEGER:
                pad = None
            else:
                max_length = model_max_length
        if trunc is not None:
            if model_max_length > LARGE_INTEGER:
                trunc = None
            else:
                max_length = model_max_length
    if (
        trunc is not None
        and pad is not None
        and pad_to_multiple_of is not None
        and max_length is not None
        and max_length % pad_to_multiple_of != 0
    ):
        raise ValueError(
            f"truncation and padding are both on, but the truncation length ({max_length}) "
            f"is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})"
        )
    return pad, trunc, max_length


# --------------------------------------------------------------------------- Rust backend
class Worker:
    """A private copy of the backend that carries per-call padding/truncation settings.

    Configuring and encoding happen under one lock, so concurrent calls with different
    options cannot see each other's settings. ``encode_batch`` runs in Rust (parallel,
    GIL released) inside the lock.
    """

    def __init__(self, base: Tokenizer) -> None:
        self.tokenizer = Tokenizer.from_str(base.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.lock = threading.Lock()

    def encode_batch(
        self,
        inputs: list[Any],
        *,
        truncation: dict[str, Any] | None,
        padding: dict[str, Any] | None,
        split_special_tokens: bool,
        is_pretokenized: bool,
        add_special_tokens: bool,
    ) -> list[Encoding]:
        tok = self.tokenizer
        with self.lock:
            current = tok.truncation
            if truncation is None:
                if current is not None:
                    tok.no_truncation()
            elif current is None or any(current.get(k) != v for k, v in truncation.items()):
                tok.enable_truncation(**truncation)
            if padding is None:
                if tok.padding is not None:
                    tok.no_padding()
            elif tok.padding != padding:
                tok.enable_padding(**padding)
            if tok.encode_special_tokens != split_special_tokens:
                tok.encode_special_tokens = split_special_tokens
            return run_rust(
                tok.encode_batch,
                inputs,
                is_pretokenized=is_pretokenized,
                add_special_tokens=add_special_tokens,
            )


def run_rust(fn: Any, inputs: list[Any], **kwargs: Any) -> list[Encoding]:
    """Call a ``tokenizers`` encode, turning its errors (and panics) into ``ValueError``."""
    try:
        return fn(inputs, **kwargs)
    except BaseException as e:  # pyo3's PanicException derives from BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit, MemoryError)):
            raise
        raise ValueError(f"the tokenizers backend refused this call: {e}") from None


def convert_encodings(
    encodings: list[Encoding],
    *,
    return_token_type_ids: bool,
    return_attention_mask: bool,
    return_overflowing_tokens: bool,
    return_special_tokens_mask: bool,
    return_offsets_mapping: bool,
    return_length: bool,
) -> tuple[dict[str, list[Any]], list[Encoding]]:
    """Rust encodings -> columns, overflow windows as extra rows (``transformers``' layout)."""
    rows: list[Encoding] = []
    mapping: list[int] = []
    for i, e in enumerate(encodings):
        rows.append(e)
        mapping.append(i)
        if return_overflowing_tokens:
            for o in e.overflowing:
                rows.append(o)
                mapping.append(i)
    data: dict[str, list[Any]] = {"input_ids": [e.ids for e in rows]}
    if return_token_type_ids:
        data["token_type_ids"] = [e.type_ids for e in rows]
    if return_attention_mask:
        data["attention_mask"] = [e.attention_mask for e in rows]
    if return_special_tokens_mask:
        data["special_tokens_mask"] = [e.special_tokens_mask for e in rows]
    if return_offsets_mapping:
        data["offset_mapping"] = [e.offsets for e in rows]
    if return_length:
        data["length"] = [len(e.ids) for e in rows]
    if return_overflowing_tokens:
        data["overflow_to_sample_mapping"] = mapping
    return data, rows


# --------------------------------------------------------------------------- pad()
def pad_features(
    tokenizer: Any,
    encoded_inputs: Any,
    padding: Any = True,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    padding_side: str | None = None,
    return_attention_mask: bool | None = None,
    return_tensors: str | None = None,
) -> BatchEncoding:
    """``tokenizer.pad``: pad already tokenized features by ``transformers``' rules."""
    check_return_tensors(return_tensors)
    side = tokenizer.padding_side if padding_side is None else padding_side
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    if (
        isinstance(encoded_inputs, (list, tuple))
        and encoded_inputs
        and isinstance(encoded_inputs[0], Mapping)
    ):
        keys = list(encoded_inputs[0].keys())
        for k, example in enumerate(encoded_inputs):
            if not isinstance(example, Mapping):
                raise TypeError(f"features[{k}] is {type(example).__name__}, expected a dict")
            missing = [key for key in keys if key not in example]
            if missing:
                raise ValueError(f"features[{k}] lacks {missing} that features[0] has")
        encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in keys}
    if not isinstance(encoded_inputs, Mapping):
        raise TypeError(
            "pad() takes a dict of features or a list of such dicts, got "
            f"{type(encoded_inputs).__name__}"
        )
    encoded_inputs = dict(encoded_inputs)
    main = tokenizer.model_input_names[0]
    if main not in encoded_inputs:
        raise ValueError(
            f"pad() needs the key {main!r} among the features, got {sorted(encoded_inputs)}"
        )
    required = encoded_inputs[main]
    if required is None or (hasattr(required, "__len__") and len(required) == 0):
        if return_attention_mask:
            encoded_inputs["attention_mask"] = []
        return BatchEncoding(encoded_inputs)

    first = required[0]
    if isinstance(first, (list, tuple)):
        for item in required:
            if len(item) != 0:
                first = item[0]
                break
    if not isinstance(first, (int, list, tuple)):
        kind = type(first).__module__.split(".")[0]
        if kind == "torch":
            return_tensors = "pt" if return_tensors is None else return_tensors
        elif kind == "numpy":
            return_tensors = "np" if return_tensors is None else return_tensors
        else:
            raise ValueError(
                f"pad() cannot read {main!r} values of type {type(first).__name__}; use "
                "lists of ints, numpy arrays or torch tensors"
            )
        encoded_inputs = {k: _to_py(v) for k, v in encoded_inputs.items()}

    pad, _, max_length = resolve_strategies(
        padding, None, max_length, None, tokenizer.model_max_length, max_length_truncates=False
    )
    if pad is not None and tokenizer.pad_token_id is None:
        raise ValueError(
            "pad() needs a pad token, but pad_token is None; set tok.pad_token = "
            "tok.eos_token (GPT-2 convention; attention_mask marks the padding) or add one "
            "with tok.add_special_tokens({'pad_token': '<|pad|>'})"
        )
    if return_attention_mask is None:
        return_attention_mask = "attention_mask" in tokenizer.model_input_names
    required = encoded_inputs[main]
    one = required and not isinstance(required[0], (list, tuple))
    if one:
        out = _pad_one(
            tokenizer,
            encoded_inputs,
            main,
            pad,
            max_length,
            pad_to_multiple_of,
            side,
            return_attention_mask,
        )
        return BatchEncoding(out, tensor_type=return_tensors, is_batched=False)
    n = len(required)
    for key, value in encoded_inputs.items():
        if len(value) != n:
            raise ValueError(f"pad(): feature {key!r} has {len(value)} rows but {main!r} has {n}")
    if pad == "longest":
        max_length = max(len(x) for x in required)
        pad = "max_length"
    batch: dict[str, list[Any]] = {}
    for i in range(n):
        row = _pad_one(
            tokenizer,
            {k: v[i] for k, v in encoded_inputs.items()},
            main,
            pad,
            max_length,
            pad_to_multiple_of,
            side,
            return_attention_mask,
        )
        for key, value in row.items():
            batch.setdefault(key, []).append(value)
    return BatchEncoding(batch, tensor_type=return_tensors)


def _to_py(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_py(v) for v in value]
    return value


def _pad_one(
    tokenizer: Any,
    inputs: dict[str, Any],
    main: str,
    pad: str | None,
    max_length: int | None,
    multiple: int | None,
    side: str,
    return_attention_mask: bool,
) -> dict[str, Any]:
    required = list(inputs[main])
    if pad == "longest":
        max_length = len(required)
    if max_length is not None and multiple is not None and max_length % multiple != 0:
        max_length = (max_length // multiple + 1) * multiple
    if return_attention_mask and "attention_mask" not in inputs:
        inputs["attention_mask"] = [1] * len(required)
    if pad is None or max_length is None or len(required) >= max_length:
        return inputs
    n = max_length - len(required)
    fills = {
        main: tokenizer.pad_token_id,
        "attention_mask": 0,
        "token_type_ids": tokenizer.pad_token_type_id,
        "special_tokens_mask": 1,
    }
    for key, fill in fills.items():
        if key in inputs and (key != "attention_mask" or return_attention_mask):
            value = list(inputs[key])
            inputs[key] = value + [fill] * n if side == "right" else [fill] * n + value
    return inputs
