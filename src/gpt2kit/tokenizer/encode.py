"""Text to ids: ``__call__``, ``encode``, ``encode_plus``, ``batch_encode_plus``, ``tokenize``.

Why apart: this is the one place that reads user input, so every check that names a bad
argument or a bad batch element (``tok(["a", 5])`` -> "text[1] is int") lives here; the
work itself goes to the Rust backend through :mod:`.batching`. Argument names, order and
defaults are ``transformers``' ``PreTrainedTokenizerBase.__call__``'s; an argument it
has that we do not is an error naming it, never silently dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .batching import (
    BatchEncoding,
    PaddingArg,
    TruncationArg,
    Worker,
    check_return_tensors,
    convert_encodings,
    pad_features,
    resolve_strategies,
    run_rust,
    to_tensor,
)

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Encoding, Tokenizer

logger = logging.getLogger(__name__)

TextInput = str | Sequence[str] | Sequence[Sequence[str]]

_KNOWN_ELSEWHERE = {
    "sanitize_control_tokens": "it is an apply_chat_template option",
    "return_assistant_tokens_mask": "it is an apply_chat_template option",
    "truncation_strategy": "pass truncation='longest_first'/'only_first'/'only_second'",
    "pad_to_max_length": "pass padding='max_length'",
    "is_pretokenized": "pass is_split_into_words=True",
}


def reject_unknown(kwargs: dict[str, Any], where: str) -> None:
    """An error naming the first argument we do not support (never a silent drop)."""
    if not kwargs:
        return
    name = next(iter(kwargs))
    hint = _KNOWN_ELSEWHERE.get(name)
    raise TypeError(
        f"{where} got an unsupported argument {name!r}"
        + (f"; {hint}" if hint else "; see docs/migrating-tokenizer.md for the supported ones")
    )


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value:
        return f"{type(value).__name__} of {type(value[0]).__name__}"
    return type(value).__name__


def as_batch(value: Any, split_words: bool, name: str) -> tuple[bool, list[Any]]:
    """``(is_batched, items)``; items are strings, ``(a, b)`` pairs, or word lists."""
    if not split_words:
        if isinstance(value, str):
            return False, [value]
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a str or a list of str; got {_describe(value)}")
        for k, v in enumerate(value):
            if isinstance(v, str):
                continue
            if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, str) for x in v):
                continue  # transformers' batch of pairs: [(text, pair), ...]
            hint = (
                " (a list of words? pass is_split_into_words=True; a pair? pass text_pair= "
                "or a tuple (text, pair))"
                if isinstance(v, (list, tuple))
                else ""
            )
            raise TypeError(
                f"{name}[{k}] is {type(v).__name__}; every element of a batch must be a str{hint}"
            )
        return True, list(value)
    if isinstance(value, str):
        raise ValueError(
            f"is_split_into_words=True expects {name} as a list of words (or a batch of such "
            "lists), got a str; split it first or pass is_split_into_words=False"
        )
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"with is_split_into_words=True, {name} must be a list of str or a list of lists "
            f"of str; got {_describe(value)}"
        )
    if value and isinstance(value[0], (list, tuple)):
        for k, words in enumerate(value):
            if not isinstance(words, (list, tuple)):
                raise TypeError(f"{name}[{k}] is {type(words).__name__}, expected a list of words")
            for j, w in enumerate(words):
                if not isinstance(w, str):
                    raise TypeError(f"{name}[{k}][{j}] is {type(w).__name__}; words must be str")
        return True, [list(v) for v in value]
    for j, w in enumerate(value):
        if not isinstance(w, str):
            raise TypeError(f"{name}[{j}] is {type(w).__name__}; words must be str")
    return False, [list(value)]


class EncodeMixin:
    """The encoding entry points; the tokenizer class supplies state and options."""

    _backend: Tokenizer
    _worker: Worker | None
    _split_special_tokens: bool
    _max_length_truncates: bool
    _space_split_words: bool
    model_input_names: list[str]
    model_max_length: int
    padding_side: str
    truncation_side: str
    pad_token: str | None
    pad_token_id: int | None
    pad_token_type_id: int

    def _get_worker(self) -> Worker:
        worker = self._worker
        if worker is None:
            worker = self._worker = Worker(self._backend)
        return worker

    def _maybe_warn_long(self, n: int) -> None:
        if n > self.model_max_length and not getattr(self, "_warned_long", False):
            self._warned_long = True
            logger.warning(
                "a sequence of %d tokens is longer than model_max_length=%d; it is kept "
                "whole (pass truncation=True to cut it, or chunk it before the model)",
                n,
                self.model_max_length,
            )

    # ------------------------------------------------------------------ __call__
    def __call__(
        self,
        text: TextInput | None = None,
        text_pair: TextInput | None = None,
        text_target: TextInput | None = None,
        text_pair_target: TextInput | None = None,
        add_special_tokens: bool = True,
        padding: PaddingArg = False,
        truncation: TruncationArg = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenize one text or a batch (optionally paired), with padding and truncation.

        The arguments are ``transformers``' (same names, order and meaning); padding,
        truncation, pairs and overflow windows are done by the Rust ``tokenizers``
        backend, as in ``GPT2TokenizerFast``.

        Args:
            text: a string, or a list of strings (batch), or a list of ``(text, pair)``
                tuples. With ``is_split_into_words=True``: a list of words, or a list
                of such lists.
            text_pair: second texts, same shape as ``text``; GPT-2 concatenates the pair
                (``sequence_ids``/``token_type_ids`` tell them apart).
            text_target: texts whose ids become ``labels`` (``text_pair_target`` pairs).
            add_special_tokens: run the post-processor; GPT-2's adds no tokens.
            padding: ``False``/``"do_not_pad"``; ``True``/``"longest"`` (to the longest
                in the batch); ``"max_length"`` (to ``max_length``, else
                ``model_max_length``). Pads with ``pad_token_id``; the mask is 0 there.
            truncation: ``True``/``"longest_first"`` (pairs: trim the longer text
                first), ``"only_first"``, ``"only_second"``, or ``False``. Cuts to
                ``max_length``, else ``model_max_length``, from ``truncation_side``.
            max_length: length limit for truncation and ``padding="max_length"``. On
                ``GPT2TokenizerFast`` alone it truncates (``transformers``' rule); on
                ``GPT2Tokenizer`` alone it never does.
            stride: with ``return_overflowing_tokens``, tokens shared by consecutive
                windows.
            is_split_into_words: input is already split into words (see class docs).
            pad_to_multiple_of: round the padded length up to a multiple of this.
            padding_side: ``"left"``/``"right"`` for this call only.
            return_tensors: ``None`` for lists, ``"pt"`` (torch) or ``"np"`` (numpy).
            return_token_type_ids: include ``token_type_ids`` (0 first text, 1 second).
            return_attention_mask: include ``attention_mask`` (default True).
            return_overflowing_tokens: return every window of a truncated text as its
                own row, with ``overflow_to_sample_mapping`` (row -> input index).
            return_special_tokens_mask: include ``special_tokens_mask`` (1 = padding
                or a token the template added).
            return_offsets_mapping: include ``offset_mapping``: ``(start, end)``
                character offsets into each text (into each word for split input).
            return_length: include ``length`` (tokens per row, padding included).
            verbose: accepted; warnings are logged once either way.
            split_special_tokens: encode special-token strings as text for this call.
            tokenizer_kwargs: more of these arguments as a dict (``transformers`` 5).

        Returns:
            A :class:`BatchEncoding`.

        Raises:
            ValueError: bad ``padding``/``truncation``/``return_tensors`` values, padding
                without a pad token, or tensors requested for unequal lengths.
            TypeError: a batch element that is not a string (named by index), or an
                argument this tokenizer does not support (named).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> enc = tok(["Hello world", "Hi"], padding=True, return_tensors="pt")
            >>> enc["input_ids"].tolist(), enc["attention_mask"].tolist()
            ([[15496, 995], [17250, 50256]], [[1, 1], [1, 0]])
            >>> tok("Hello world", truncation=True, max_length=1)["input_ids"]
            [15496]
        """
        del verbose
        options = dict(
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
            split_special_tokens=split_special_tokens,
        )
        if tokenizer_kwargs:
            extra = dict(tokenizer_kwargs)
            unknown = {k: v for k, v in extra.items() if k not in options}
            reject_unknown(unknown, f"{type(self).__name__}.__call__ (tokenizer_kwargs)")
            options.update(extra)
        reject_unknown(kwargs, f"{type(self).__name__}.__call__")
        if text is None and text_target is None:
            raise ValueError("pass text (or text_target) to tokenize")
        out = None
        if text is not None:
            out = self._encode(text, text_pair, **options)  # type: ignore[arg-type]
        if text_target is None:
            assert out is not None
            return out
        target = self._encode(text_target, text_pair_target, **options)  # type: ignore[arg-type]
        if out is None:
            return target
        out["labels"] = target["input_ids"]
        return out

    def _encode(
        self,
        text: Any,
        text_pair: Any,
        *,
        add_special_tokens: bool,
        padding: Any,
        truncation: Any,
        max_length: int | None,
        stride: int,
        is_split_into_words: bool,
        pad_to_multiple_of: int | None,
        padding_side: str | None,
        return_tensors: str | None,
        return_token_type_ids: bool | None,
        return_attention_mask: bool | None,
        return_overflowing_tokens: bool,
        return_special_tokens_mask: bool,
        return_offsets_mapping: bool,
        return_length: bool,
        split_special_tokens: bool | None,
    ) -> BatchEncoding:
        check_return_tensors(return_tensors)
        side = self.padding_side if padding_side is None else padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise ValueError(f"stride must be an int >= 0, got {stride!r}")
        pad_mode, trunc_mode, max_length = resolve_strategies(
            padding,
            truncation,
            max_length,
            pad_to_multiple_of,
            self.model_max_length,
            max_length_truncates=self._max_length_truncates,
        )
        pad_id = self.pad_token_id
        if pad_mode is not None and pad_id is None:
            raise ValueError(
                f"padding={padding!r} needs a pad token, but pad_token is None. Set "
                "tok.pad_token = tok.eos_token (GPT-2 convention; attention_mask marks the "
                "padding) or tok.add_special_tokens({'pad_token': '<|pad|>'}) and resize "
                "the model's embeddings, or call with padding=False"
            )
        if trunc_mode is not None:
            assert max_length is not None
            if stride >= max_length:
                raise ValueError(
                    f"stride={stride} must be smaller than max_length={max_length} (each "
                    "overflow window repeats `stride` tokens of the previous one)"
                )

        batched, firsts = as_batch(text, is_split_into_words, "text")
        inputs: list[Any] = firsts
        if text_pair is not None:
            pair_batched, seconds = as_batch(text_pair, is_split_into_words, "text_pair")
            if pair_batched != batched or len(seconds) != len(firsts):
                raise ValueError(
                    "text_pair must have the same shape as text: one pair, or a list of "
                    f"the same length (got {len(firsts)} texts and {len(seconds)} pairs)"
                )
            if not batched and not is_split_into_words and seconds[0] == "":
                pass  # transformers drops an empty single pair (`if text_pair`)
            else:
                inputs = list(zip(firsts, seconds))
        if is_split_into_words and self._space_split_words:
            inputs, flags = _space_words(inputs)
        else:
            flags = None

        split = (
            self._split_special_tokens
            if split_special_tokens is None
            else bool(split_special_tokens)
        )
        encodings: list[Encoding]
        if not inputs:
            encodings = []
        elif pad_mode is None and trunc_mode is None and split == self._split_special_tokens:
            encodings = run_rust(
                self._backend.encode_batch,
                inputs,
                is_pretokenized=is_split_into_words,
                add_special_tokens=add_special_tokens,
            )
        else:
            trunc_cfg = None
            if trunc_mode is not None:
                trunc_cfg = {
                    "max_length": max_length,
                    "stride": stride,
                    "strategy": trunc_mode,
                    "direction": self.truncation_side,
                }
            pad_cfg = None
            if pad_mode is not None:
                pad_cfg = {
                    "length": max_length if pad_mode == "max_length" else None,
                    "direction": side,
                    "pad_id": pad_id,
                    "pad_token": self.pad_token,
                    "pad_type_id": self.pad_token_type_id,
                    "pad_to_multiple_of": pad_to_multiple_of,
                }
            try:
                encodings = self._get_worker().encode_batch(
                    inputs,
                    truncation=trunc_cfg,
                    padding=pad_cfg,
                    split_special_tokens=split,
                    is_pretokenized=is_split_into_words,
                    add_special_tokens=add_special_tokens,
                )
            except ValueError as e:
                room = re.search(r"`max_len=(\d+)`", str(e))
                if room is not None:
                    raise ValueError(
                        f"stride={stride} is too large: with truncation={trunc_mode!r} and "
                        f"max_length={max_length}, a truncated text keeps only "
                        f"{room.group(1)} tokens of a window, and stride must be smaller than "
                        "that; lower stride or raise max_length"
                    ) from None
                if trunc_mode in ("only_first", "only_second"):
                    raise ValueError(
                        f"truncation={trunc_mode!r} cannot fit max_length={max_length}: the "
                        f"other text of a pair is too long by itself ({e}); use "
                        "truncation='longest_first'"
                    ) from None
                raise

        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        data, rows = convert_encodings(
            encodings,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
        )
        if not inputs:
            data = {k: [] for k in data}
        if flags is not None and return_offsets_mapping:
            sample = data.get("overflow_to_sample_mapping") or range(len(rows))
            data["offset_mapping"] = [_unspace_offsets(e, flags[s]) for e, s in zip(rows, sample)]
        if trunc_mode is None:
            for ids in data["input_ids"]:
                self._maybe_warn_long(len(ids))

        if return_tensors is not None:
            out = {k: to_tensor(v, return_tensors, k) for k, v in data.items()}
            return BatchEncoding(out, rows, is_batched=batched)
        if not batched and not return_overflowing_tokens:
            single = {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in data.items()}
            return BatchEncoding(single, rows, is_batched=False)
        return BatchEncoding(data, rows, is_batched=batched or return_overflowing_tokens)

    # ------------------------------------------------------------------ shortcuts
    def encode(
        self,
        text: TextInput,
        text_pair: TextInput | None = None,
        add_special_tokens: bool = True,
        padding: PaddingArg = False,
        truncation: TruncationArg = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        *,
        split_special_tokens: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Token ids of one text (``self(text, ...)["input_ids"]``, as in ``transformers``).

        On ``GPT2Tokenizer`` it never truncates unless ``truncation`` is given; on
        ``GPT2TokenizerFast``, ``max_length`` alone truncates, as ``transformers`` does.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.encode("a<|endoftext|>")
            [64, 50256]
            >>> tok.encode("a<|endoftext|>", split_special_tokens=True)
            [64, 27, 91, 437, 1659, 5239, 91, 29]
        """
        reject_unknown(kwargs, f"{type(self).__name__}.encode")
        if (
            isinstance(text, str)
            and text_pair is None
            and padding is False
            and truncation is None
            and (max_length is None or not self._max_length_truncates)
            and return_tensors is None
            and (
                split_special_tokens is None
                or bool(split_special_tokens) == self._split_special_tokens
            )
        ):
            ids = self._backend.encode(text, add_special_tokens=add_special_tokens).ids
            self._maybe_warn_long(len(ids))
            return ids
        if not isinstance(text, (str, list, tuple)):
            raise TypeError(f"encode() takes a str (or a list of str), got {type(text).__name__}")
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            padding_side=padding_side,
            return_tensors=return_tensors,
            split_special_tokens=split_special_tokens,
        )["input_ids"]

    def encode_plus(
        self, text: TextInput, text_pair: TextInput | None = None, **kwargs: Any
    ) -> BatchEncoding:
        """``transformers`` 4.x's name for calling the tokenizer on one text (or pair)."""
        return self(text, text_pair, **kwargs)

    def batch_encode_plus(
        self, batch_text_or_text_pairs: Sequence[Any], **kwargs: Any
    ) -> BatchEncoding:
        """``transformers`` 4.x's name for calling the tokenizer on a batch.

        Elements are strings, ``(text, pair)`` tuples, or word lists with
        ``is_split_into_words=True``.
        """
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TypeError(
                "batch_encode_plus takes a list of texts or (text, pair) tuples, got "
                f"{type(batch_text_or_text_pairs).__name__}"
            )
        items = list(batch_text_or_text_pairs)
        if (
            kwargs.get("is_split_into_words")
            and items
            and all(isinstance(x, tuple) and len(x) == 2 for x in items)
        ):
            return self([list(a) for a, _ in items], [list(b) for _, b in items], **kwargs)
        return self(items, **kwargs)

    def tokenize(
        self,
        text: str,
        pair: str | None = None,
        add_special_tokens: bool = False,
        *,
        split_special_tokens: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Byte-level token strings of a text (and pair).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().tokenize("Hello world")
            ['Hello', 'Ġworld']
        """
        reject_unknown(kwargs, f"{type(self).__name__}.tokenize")
        if not isinstance(text, str):
            raise TypeError(f"tokenize() takes one str, got {type(text).__name__}")
        return self(
            text,
            pair,
            add_special_tokens=add_special_tokens,
            split_special_tokens=split_special_tokens,
            return_attention_mask=False,
        ).tokens()

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
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
        for k, t in enumerate([tokens] if single else tokens):
            i = self._backend.token_to_id(t) if isinstance(t, str) else None
            if i is None:
                where = "" if single else f"tokens[{k}] = "
                raise KeyError(
                    f"{where}{t!r} is not a token of this vocabulary (tokens are byte-level "
                    "strings such as 'Ġworld'; use encode() for text)"
                )
            out.append(i)
        return out[0] if single else out

    def pad(
        self,
        encoded_inputs: Any,
        padding: PaddingArg = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad tokenized features (a dict of lists, or a list of dicts) to one length.

        What ``transformers``' ``DataCollatorWithPadding`` and
        ``DataCollatorForLanguageModeling`` call; same rules: pads ``input_ids`` with
        ``pad_token_id``, ``attention_mask`` with 0 (creating it if absent),
        ``token_type_ids`` with 0 and ``special_tokens_mask`` with 1; other keys pass
        through. Tensors in give tensors out.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().pad({"input_ids": [[1, 2, 3], [4]]})["attention_mask"]
            [[1, 1, 1], [1, 0, 0]]
        """
        del verbose
        return pad_features(
            self,
            encoded_inputs,
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )


def _space_words(inputs: list[Any]) -> tuple[list[Any], list[Any]]:
    """gpt2kit's split-word rule: a space before every word but the first.

    Returns the prepared inputs and, per input, the flags saying which words got a
    space (per sequence for pairs) so offsets can be shifted back into each word.
    """
    prepared, flags = [], []
    for item in inputs:
        seqs = item if isinstance(item, tuple) else (item,)
        new_seqs, seq_flags = [], []
        for words in seqs:
            f = [i > 0 and bool(w) and not w.startswith(" ") for i, w in enumerate(words)]
            new_seqs.append([" " + w if g else w for w, g in zip(words, f)])
            seq_flags.append(f)
        prepared.append(tuple(new_seqs) if isinstance(item, tuple) else new_seqs[0])
        flags.append(seq_flags)
    return prepared, flags


def _unspace_offsets(e: Encoding, seq_flags: list[list[bool]]) -> list[tuple[int, int]]:
    out = []
    for (s, t), w, q in zip(e.offsets, e.word_ids, e.sequence_ids):
        if w is not None and q is not None and seq_flags[q][w]:
            out.append((max(s - 1, 0), max(t - 1, 0)))
        else:
            out.append((s, t))
    return out
