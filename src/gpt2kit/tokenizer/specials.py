"""Special and added tokens: the named roles (``eos_token``, ``pad_token``...) and their ids.

Why apart: which strings are special decides what ``skip_special_tokens`` drops, what
``special_tokens_mask`` marks and which ids a model's embeddings must hold, and those
rules are the same whatever the encoding options. The names follow ``transformers``
(``bos``, ``eos``, ``unk``, ``pad``, ``cls``, ``sep``, ``mask`` plus
``additional_special_tokens``), so code that adds a ``cls_token`` for a classification
recipe runs unchanged. Every token is registered in the Rust backend, which is what
matches them whole in text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tokenizers import AddedToken

from .files import token_content

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

SPECIAL_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
"""The named special-token roles of ``transformers`` (in its order)."""
ALLOWED_SPECIAL_KEYS = (*SPECIAL_KEYS, "additional_special_tokens", "extra_special_tokens")


def _role(key: str, doc: str) -> tuple[property, property]:
    """A ``<key>`` property (string) and a ``<key>_id`` property (int) for one role."""

    def get(self: SpecialTokensMixin) -> str | None:
        return self._special[key]

    def set_(self: SpecialTokensMixin, value: str | None) -> None:
        self._set_special(key, value)

    def get_id(self: SpecialTokensMixin) -> int | None:
        return self._special_id(key)

    def set_id(self: SpecialTokensMixin, value: int | None) -> None:
        self._set_special(key, None if value is None else self._id_to_token_checked(value))

    return (
        property(get, set_, doc=doc),
        property(get_id, set_id, doc=f"Id of ``{key}`` (None when unset)."),
    )


class SpecialTokensMixin:
    """Named special tokens, added tokens and the masks built from them."""

    _backend: Tokenizer
    _special: dict[str, str | None]
    _additional_special: list[str]

    def _invalidate(self) -> None:  # pragma: no cover - defined by the tokenizer class
        raise NotImplementedError

    # ------------------------------------------------------------------ roles
    bos_token, bos_token_id = _role("bos_token", "Beginning-of-sequence token (GPT-2: EOT).")
    eos_token, eos_token_id = _role("eos_token", "End-of-sequence token (``<|endoftext|>``).")
    unk_token, unk_token_id = _role("unk_token", "Unknown token; byte-level BPE never needs it.")
    sep_token, sep_token_id = _role("sep_token", "Separator token; GPT-2 has none by default.")
    cls_token, cls_token_id = _role("cls_token", "Classification token; none by default.")
    mask_token, mask_token_id = _role("mask_token", "Mask token; none by default.")
    pad_token, pad_token_id = _role(
        "pad_token",
        "Padding token. Setting it needs a token already in the vocabulary; add a new one "
        "with ``add_special_tokens({'pad_token': ...})`` (and resize the model's embeddings).",
    )

    @property
    def pad_token_type_id(self) -> int:
        """Token type id of padding (0, as in ``transformers``)."""
        return 0

    def _special_id(self, key: str) -> int | None:
        token = self._special[key]
        return None if token is None else self._backend.token_to_id(token)

    def _id_to_token_checked(self, value: int) -> str:
        token = self._backend.id_to_token(int(value))
        if token is None:
            raise ValueError(f"id {value} is outside this vocabulary (0..{len(self) - 1})")
        return token

    def _set_special(self, key: str, value: Any) -> None:
        token = token_content(value)
        if token is not None and self._backend.token_to_id(token) is None:
            raise ValueError(
                f"{key} {token!r} is not in the vocabulary; use "
                f"add_special_tokens({{{key!r}: {token!r}}}) to add it"
                + (
                    ", or tok.pad_token = tok.eos_token for GPT-2's usual pad = EOS"
                    if key == "pad_token"
                    else ""
                )
            )
        self._special[key] = token

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    # ------------------------------------------------------------------ listings
    @property
    def special_tokens_map(self) -> dict[str, Any]:
        """Set roles -> token string, plus ``additional_special_tokens`` when any."""
        out: dict[str, Any] = {k: v for k, v in self._special.items() if v is not None}
        if self._additional_special:
            out["additional_special_tokens"] = list(self._additional_special)
        return out

    @property
    def additional_special_tokens(self) -> list[str]:
        """Special tokens registered besides the named ones."""
        return list(self._additional_special)

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        """Ids of :attr:`additional_special_tokens`."""
        return [self._backend.token_to_id(t) for t in self._additional_special]  # type: ignore[misc]

    @property
    def all_special_tokens(self) -> list[str]:
        """Every distinct special token string (named and additional)."""
        seen = [t for t in self._special.values() if t is not None] + self._additional_special
        return list(dict.fromkeys(seen))

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of :attr:`all_special_tokens`."""
        return [self._backend.token_to_id(t) for t in self.all_special_tokens]  # type: ignore[misc]

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """Id -> ``AddedToken`` for every token added on top of the BPE vocabulary."""
        return dict(sorted(self._backend.get_added_tokens_decoder().items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        """Token string -> id for every added token."""
        return {t.content: i for i, t in self.added_tokens_decoder.items()}

    def get_added_vocab(self) -> dict[str, int]:
        """The added tokens as string -> id (``transformers``' name)."""
        return self.added_tokens_encoder

    def get_special_tokens_mask(
        self,
        token_ids_0: Sequence[int],
        token_ids_1: Sequence[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 for special ids, 0 for the rest.

        With ``already_has_special_tokens=True``, marks the special ids found in
        ``token_ids_0``; otherwise GPT-2 adds no tokens around text, so all zeros.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().get_special_tokens_mask([1, 2, 50256], already_has_special_tokens=True)
            [0, 0, 1]
        """
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError(
                    "token_ids_1 must be None with already_has_special_tokens=True: pass "
                    "the full sequence as token_ids_0"
                )
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        return [0] * (len(token_ids_0) + (len(token_ids_1) if token_ids_1 is not None else 0))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """Tokens the template adds around text: none for GPT-2."""
        del pair
        return 0

    # ------------------------------------------------------------------ adding
    def _add(self, tokens: Sequence[str | AddedToken], special: bool) -> int:
        """Register tokens in the backend; the count is the backend's, as in ``transformers``."""
        objs = [
            t
            if isinstance(t, AddedToken)
            else AddedToken(t, special=special, normalized=not special)
            for t in tokens
        ]
        if special:
            added = self._backend.add_special_tokens(objs)
        else:
            added = self._backend.add_tokens(objs)
        self._invalidate()
        return added

    def add_tokens(
        self,
        new_tokens: str | AddedToken | Sequence[str | AddedToken],
        special_tokens: bool = False,
    ) -> int:
        """Add tokens that are matched whole in text before BPE.

        Args:
            new_tokens: one token or a list of them (``str`` or ``tokenizers.AddedToken``).
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
        tokens = [new_tokens] if isinstance(new_tokens, (str, AddedToken)) else list(new_tokens)
        for i, t in enumerate(tokens):
            content = t.content if isinstance(t, AddedToken) else t
            if not isinstance(content, str) or not content:
                raise ValueError(f"new_tokens[{i}] must be a non-empty string, got {t!r}")
        added = self._add(tokens, special=special_tokens)
        if special_tokens:
            for t in tokens:
                content = t.content if isinstance(t, AddedToken) else t
                if content not in self.all_special_tokens:
                    self._additional_special.append(content)
        return added

    def add_special_tokens(
        self,
        special_tokens_dict: Mapping[str, Any],
        replace_additional_special_tokens: bool = True,
        *,
        replace_extra_tokens: bool | None = None,
    ) -> int:
        """Set named special tokens, adding any that are not in the vocabulary yet.

        Args:
            special_tokens_dict: keys among ``bos_token``, ``eos_token``, ``unk_token``,
                ``sep_token``, ``pad_token``, ``cls_token``, ``mask_token`` (a string or
                ``AddedToken`` each) and ``additional_special_tokens`` (a list; 5.x's
                ``extra_special_tokens`` is the same).
            replace_additional_special_tokens: a given ``additional_special_tokens`` list
                replaces the current one (True, as in ``transformers``) or extends it.
                The replaced tokens stay in the vocabulary.
            replace_extra_tokens: ``transformers`` 5.x's name for the same switch.

        Returns:
            How many new ids were created; resize the model's embeddings to ``len(tok)``.

        Raises:
            ValueError: for another key (GPT-2 knows only these roles).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.add_special_tokens({"pad_token": "<|pad|>", "cls_token": "<|cls|>"})
            2
            >>> tok.pad_token_id, tok.cls_token_id, tok.eos_token_id
            (50257, 50258, 50256)
        """
        if not isinstance(special_tokens_dict, Mapping):
            raise TypeError(
                "special_tokens_dict must be a dict such as {'pad_token': '<|pad|>'}, got "
                f"{type(special_tokens_dict).__name__}"
            )
        unknown = set(special_tokens_dict) - set(ALLOWED_SPECIAL_KEYS)
        if unknown:
            raise ValueError(
                f"add_special_tokens got unsupported keys {sorted(unknown)}; allowed: "
                f"{list(ALLOWED_SPECIAL_KEYS)} (other tokens go in additional_special_tokens)"
            )
        replace = (
            replace_additional_special_tokens
            if replace_extra_tokens is None
            else replace_extra_tokens
        )
        added = 0
        for key, value in special_tokens_dict.items():
            if key in ("additional_special_tokens", "extra_special_tokens"):
                if isinstance(value, (str, AddedToken)) or not isinstance(value, Sequence):
                    raise TypeError(f"{key} must be a list of tokens, got {type(value).__name__}")
                strs = [t for t in (token_content(v) for v in value) if t]
                added += self._add(strs, special=True)
                if replace:
                    self._additional_special = []
                for t in strs:
                    if t not in self._additional_special:
                        self._additional_special.append(t)
                continue
            token = token_content(value)
            if token is not None:
                if not token:
                    raise ValueError(f"{key} must be a non-empty string")
                obj = value if isinstance(value, AddedToken) else token
                added += self._add([obj], special=True)
            self._special[key] = token
        return added
