"""Ids back to text: ``decode``, ``batch_decode``, and the id <-> token-string maps.

Why apart: decoding never depends on padding or truncation, and its one subtle rule is
``clean_up_tokenization_spaces``. ``transformers`` 5 ignores that flag for byte-level
BPE (with a warning), because the clean-up was written for WordPiece and deletes real
spaces (``"a ,b"`` -> ``"a,b"``); we do the same, so ``decode(encode(s)) == s`` and the
strings equal ``transformers``'. The destructive clean-up stays reachable under
``transformers``' own switch name, ``clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output``.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)


def to_int_list(ids: Any, what: str) -> list[int]:
    """A flat list of ints from a list, a tuple, a 1-D tensor/array or one int."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    if not isinstance(ids, Iterable) or isinstance(ids, (str, bytes)):
        raise TypeError(f"{what} must be an int or a sequence of ints, got {type(ids).__name__}")
    out = []
    for k, x in enumerate(ids):
        try:
            out.append(operator.index(x))
        except TypeError:
            raise TypeError(
                f"{what}[{k}] is {type(x).__name__}; {what} must be a flat sequence of ints "
                "(use batch_decode for a batch of sequences)"
            ) from None
    return out


def clean_up_tokenization(text: str) -> str:
    """``transformers``' WordPiece clean-up (removes spaces before punctuation)."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


class DecodeMixin:
    """``decode`` / ``batch_decode`` / ``convert_ids_to_tokens`` / ``convert_tokens_to_string``."""

    _backend: Tokenizer
    clean_up_tokenization_spaces: bool
    clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: bool = False
    all_special_ids: list[int]

    def __len__(self) -> int:  # pragma: no cover - defined by the tokenizer class
        raise NotImplementedError

    def _check_ids(self, ids: list[int]) -> list[int]:
        n = len(self)
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside this vocabulary (0..{n - 1})")
        return ids

    def _clean(self, text: str, flag: bool | None) -> str:
        flag = self.clean_up_tokenization_spaces if flag is None else flag
        if not flag:
            return text
        if not self.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output:
            if not getattr(self, "_warned_cleanup", False):
                self._warned_cleanup = True
                logger.warning(
                    "ignoring clean_up_tokenization_spaces=True, as transformers 5 does for "
                    "byte-level BPE: the clean-up deletes real spaces before punctuation. Set "
                    "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"
                    "=True on the tokenizer to apply it anyway"
                )
            return text
        return clean_up_tokenization(text)

    def decode(
        self,
        token_ids: int | Sequence[int] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> Any:
        """Text of a sequence of ids (bytes that are not valid UTF-8 become U+FFFD).

        Args:
            token_ids: ids as a list, a 1-D tensor/array, or a single int. A list of
                lists (or a 2-D tensor) decodes each row, as ``transformers`` 5 does.
            skip_special_tokens: drop special tokens (EOS/pad and added special tokens).
            clean_up_tokenization_spaces: see the module docs: ignored for byte-level
                BPE unless the tokenizer's corrupting switch is on.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.decode([15496, 995, 50256])
            'Hello world<|endoftext|>'
            >>> tok.decode([15496, 995, 50256], skip_special_tokens=True)
            'Hello world'
        """
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        if (
            isinstance(token_ids, (list, tuple))
            and token_ids
            and isinstance(token_ids[0], (list, tuple))
        ):
            return self.batch_decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        ids = self._check_ids(to_int_list(token_ids, "token_ids"))
        text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        return self._clean(text, clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Sequence[Sequence[int]] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """Decode each sequence of ids (a list of lists or a 2-D tensor/array).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().batch_decode([[15496], [995, 50256]], skip_special_tokens=True)
            ['Hello', ' world']
        """
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        rows = [self._check_ids(to_int_list(s, f"sequences[{k}]")) for k, s in enumerate(sequences)]
        texts = self._backend.decode_batch(rows, skip_special_tokens=skip_special_tokens)
        return [self._clean(t, clean_up_tokenization_spaces) for t in texts]

    def convert_ids_to_tokens(
        self, ids: int | Sequence[int] | Any, skip_special_tokens: bool = False
    ) -> Any:
        """Byte-level token strings for ids (a spaced word shows as ``"Ġword"``).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().convert_ids_to_tokens([15496, 995])
            ['Hello', 'Ġworld']
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int):
            return self._backend.id_to_token(self._check_ids([ids])[0])
        id_list = self._check_ids(to_int_list(ids, "ids"))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._backend.id_to_token(i) for i in id_list if i not in special]

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
