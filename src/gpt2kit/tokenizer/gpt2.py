"""The tokenizer classes: ``GPT2Tokenizer``, ``GPT2TokenizerFast`` and ``AutoTokenizer``.

Why two classes over one implementation: gpt2kit's own pipelines, collators and server
were written for gpt2kit's conventions (pad = EOS out of the box, offsets without the
carried space, never a silent truncation), while a user arriving from ``transformers``
expects its defaults. ``GPT2TokenizerFast`` (also what ``AutoTokenizer`` returns) takes
``transformers``' defaults and gives the same ids, masks, offsets and overflow rows as
``transformers.GPT2TokenizerFast`` on the same files; ``GPT2Tokenizer`` keeps gpt2kit's.
docs/migrating-tokenizer.md lists every difference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, pre_tokenizers, processors

from ..hub import HubOptions
from . import files as F
from .batching import Worker
from .chat import ChatMixin
from .decode import DecodeMixin
from .encode import EncodeMixin
from .specials import SPECIAL_KEYS, SpecialTokensMixin

logger = logging.getLogger(__name__)

EOT = F.EOT
PathLike = F.PathLike
_HUB_KEYS = ("revision", "token", "cache_dir", "local_files_only", "force_download")
_IGNORED_LOAD_KEYS = ("trust_remote_code", "use_fast", "subfolder", "_from_auto")


class GPT2Tokenizer(SpecialTokensMixin, EncodeMixin, DecodeMixin, ChatMixin):
    """OpenAI's GPT-2 tokenizer (byte-level BPE, 50257 tokens) with ``transformers``' API.

    Why its own class rather than ``transformers``': gpt2kit must not depend on
    ``transformers`` at runtime and must load offline from the shipped files. The work
    is done by the Rust ``tokenizers`` library, as in ``transformers.GPT2TokenizerFast``.
    gpt2kit's conventions, where they differ from ``transformers``' (use
    :class:`GPT2TokenizerFast` for those):

    * ``pad_token`` defaults to ``<|endoftext|>`` (pad = EOS; the attention mask, not the
      id, tells padding apart), so ``padding=True`` works out of the box.
    * ``max_length`` alone never truncates; only ``truncation=...`` does.
    * ``trim_offsets=True``: offsets leave out the space a token carries (``" world"``
      maps to ``"world"``), which is what answer spans and entity offsets want.
    * ``is_split_into_words=True`` puts a space before every word except the first
      (the first gets one only with ``add_prefix_space=True``), so ``["Hello", "world"]``
      encodes like ``"Hello world"``.
    * a folder without ``model_max_length`` gets 1024 (GPT-2's context).

    Args:
        vocab_file: ``vocab.json`` (token string -> id). With ``merges_file``; when neither
            nor ``tokenizer_file``/``tokenizer_object`` is given, the shipped GPT-2 files.
        merges_file: ``merges.txt`` (``#version`` header then one merge per line).
        tokenizer_file: a ``tokenizer.json`` to load instead of vocab/merges.
        tokenizer_object: an already built ``tokenizers.Tokenizer`` (byte-level BPE); a copy
            is used, with GPT-2's decoder and post-processor.
        add_prefix_space: add a space before the text, so its first word is encoded like
            any later word. GPT-2 was trained without it; leave False unless you know.
        trim_offsets: offsets exclude the spaces a token carries. With False,
            ``text[s:e]`` is exactly the token's text (``transformers``' offsets).
        bos_token, eos_token, unk_token: GPT-2: ``<|endoftext|>``.
        pad_token: padding token; ``None`` forbids padding.
        sep_token, cls_token, mask_token: optional roles (none in GPT-2).
        additional_special_tokens: more special tokens to register (added if missing).
        padding_side: ``"right"`` (default) or ``"left"`` (for batched generation).
        truncation_side: ``"right"`` (default, keep the start) or ``"left"`` (keep the end).
        model_max_length: context size of the model (1024 for GPT-2); the default
            ``max_length`` when truncating or padding to ``"max_length"``.
        split_special_tokens: encode special-token strings found in text as plain text
            (untrusted input cannot then inject ``<|endoftext|>``).
        clean_up_tokenization_spaces: default for ``decode``; see :mod:`.decode`.
        chat_template: a Jinja chat template for :meth:`apply_chat_template`.
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

    # Conventions that GPT2TokenizerFast sets to transformers' values.
    _default_pad: str | None = EOT
    _default_trim_offsets: bool = True
    _max_length_truncates: bool = False
    _space_split_words: bool = True
    _default_model_max_length: int = 1024

    model_input_names: list[str] = ["input_ids", "attention_mask"]  # noqa: RUF012
    is_fast = True

    def __init__(
        self,
        vocab_file: PathLike | None = None,
        merges_file: PathLike | None = None,
        *,
        tokenizer_file: PathLike | None = None,
        tokenizer_object: Tokenizer | None = None,
        add_prefix_space: bool = False,
        trim_offsets: bool | None = None,
        bos_token: Any = EOT,
        eos_token: Any = EOT,
        unk_token: Any = EOT,
        pad_token: Any = "__default__",
        sep_token: Any = None,
        cls_token: Any = None,
        mask_token: Any = None,
        additional_special_tokens: Sequence[Any] = (),
        padding_side: str = "right",
        truncation_side: str = "right",
        model_max_length: int | None = None,
        split_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
        chat_template: str | None = None,
        name_or_path: str = "",
        errors: str = "replace",
        add_bos_token: bool = False,
        add_eos_token: bool = False,
    ) -> None:
        if errors != "replace":
            raise ValueError(
                f"errors={errors!r} is not supported: the Rust decoder always replaces "
                "invalid UTF-8 with U+FFFD (errors='replace')"
            )
        if add_bos_token or add_eos_token:
            raise ValueError(
                "add_bos_token/add_eos_token are not supported: GPT-2 wraps text in no "
                "special tokens; prepend bos_token_id / append eos_token_id to the ids"
            )
        backend, shipped = F.build_backend(
            vocab_file, merges_file, tokenizer_file, tokenizer_object, add_prefix_space
        )
        if shipped:
            name_or_path = name_or_path or "gpt2"
        self._backend: Tokenizer = backend
        self._worker: Worker | None = None
        self._add_prefix_space = bool(add_prefix_space)
        self._trim_offsets = (
            self._default_trim_offsets if trim_offsets is None else bool(trim_offsets)
        )
        self._configure_pipeline()

        self._special: dict[str, str | None] = dict.fromkeys(SPECIAL_KEYS)
        self._additional_special: list[str] = []
        self._split_special_tokens = False
        self.name_or_path = str(name_or_path)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = (
            self._default_model_max_length if model_max_length is None else model_max_length
        )
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.chat_template = chat_template
        self._warned_long = False

        if pad_token == "__default__":
            pad_token = self._default_pad
        named = dict(
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            sep_token=sep_token,
            pad_token=pad_token,
            cls_token=cls_token,
            mask_token=mask_token,
        )
        self.add_special_tokens({k: v for k, v in named.items() if v is not None})
        self.add_special_tokens({"additional_special_tokens": list(additional_special_tokens)})
        self.split_special_tokens = split_special_tokens

    # ------------------------------------------------------------------ construction
    def _invalidate(self) -> None:
        """Drop the configured copy of the backend (it must see newly added tokens)."""
        self._worker = None

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
        # transformers 5 saves TemplateProcessing("$A:0", "$A:0 $B:1") with no special
        # tokens: the same encodings as ByteLevel's. Anything adding tokens is not GPT-2.
        adds = old_post is not None and (
            old_post.num_special_tokens_to_add(False) or old_post.num_special_tokens_to_add(True)
        )
        if adds and not isinstance(old_post, processors.ByteLevel):
            logger.warning(
                "replacing post-processor %s: GPT-2 adds no special tokens around text",
                type(old_post).__name__,
            )
        backend.post_processor = processors.ByteLevel(
            add_prefix_space=self._add_prefix_space, trim_offsets=self._trim_offsets
        )
        backend.no_padding()
        backend.no_truncation()
        self._invalidate()

    @classmethod
    def from_files(cls, vocab_file: PathLike, merges_file: PathLike, **kwargs: Any) -> Any:
        """Build from a ``vocab.json`` and a ``merges.txt``.

        Example:
            >>> from gpt2kit.tokenizer import ASSETS_DIR, GPT2Tokenizer
            >>> tok = GPT2Tokenizer.from_files(ASSETS_DIR / "vocab.json", ASSETS_DIR / "merges.txt")
            >>> len(tok)
            50257
        """
        return cls(vocab_file, merges_file, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: PathLike, *args: Any, **kwargs: Any
    ) -> Any:
        """Load a tokenizer by model name, local folder, or Hugging Face Hub id.

        Resolution order: an existing local folder; one of :data:`OPENAI_GPT2_NAMES`
        (``"gpt2"``, ``"gpt2-medium"``, ... with or without their ``openai-community/``
        owner), which load the shipped files with no network; otherwise a Hub repo id,
        from which only the tokenizer files are fetched (through :mod:`gpt2kit.hub`).

        A folder is read from ``tokenizer.json`` if present, else ``vocab.json`` +
        ``merges.txt``; ``tokenizer_config.json`` / ``special_tokens_map.json`` /
        ``chat_template.jinja`` supply special tokens, sides, ``model_max_length`` and
        the chat template. A missing/``null`` pad token gives the class default
        (EOS here, None on ``GPT2TokenizerFast``).

        Args:
            pretrained_model_name_or_path: model name, folder path or Hub repo id.
            revision, token, cache_dir, local_files_only, force_download: Hub options,
                as in ``transformers``.
            trust_remote_code, use_fast: accepted; no remote code ever runs.
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
        if args:
            raise TypeError(
                "from_pretrained takes one positional argument (the name or folder); pass "
                "the rest by keyword"
            )
        for key in _IGNORED_LOAD_KEYS:
            kwargs.pop(key, None)
        hub = HubOptions(**{k: kwargs.pop(k) for k in _HUB_KEYS if k in kwargs})
        name = os.fspath(pretrained_model_name_or_path)
        path = Path(name).expanduser()
        if path.is_dir():
            return cls._from_file_map(F.folder_files(path), name, kwargs)
        if name in F.OPENAI_GPT2_NAMES:
            kwargs.setdefault("name_or_path", name)
            kwargs.setdefault("model_max_length", 1024)  # what the Hub's config says
            return cls(**kwargs)
        if F.looks_local(name):
            raise FileNotFoundError(
                f"no such tokenizer folder: {name!r}. Pass a folder holding tokenizer.json "
                "or vocab.json + merges.txt, or a GPT-2 name such as 'gpt2'"
            )
        return cls._from_file_map(F.download_from_hub(name, hub), name, kwargs)

    @classmethod
    def _from_file_map(
        cls, files: Mapping[str, Path], name: str, overrides: Mapping[str, Any]
    ) -> Any:
        settings, config = F.settings_from_folder(files, SPECIAL_KEYS)
        if (
            settings.get("model_max_length", 0) > F.LARGE_INTEGER
            and cls._default_model_max_length < F.LARGE_INTEGER
        ):
            del settings["model_max_length"]  # "no limit": gpt2kit's class keeps 1024
        if settings.get("pad_token") is None:  # absent or null: the class's convention
            eos = settings.get("eos_token", EOT)
            settings["pad_token"] = (eos or EOT) if cls._default_pad is not None else None
        settings.update(overrides)
        settings.setdefault("name_or_path", name)
        if "tokenizer.json" in files:
            if "add_prefix_space" not in settings:  # take it from tokenizer.json's pipeline
                prefix = F.byte_level_prefix_space(files["tokenizer.json"])
                if prefix is not None:
                    settings["add_prefix_space"] = prefix
            return cls(tokenizer_file=files["tokenizer.json"], **settings)
        tok = cls(files["vocab.json"], files["merges.txt"], **settings)
        tok._restore_added_tokens(config.get("added_tokens_decoder") or {})
        return tok

    def _restore_added_tokens(self, added: Mapping[str, Any]) -> None:
        """Re-add tokens listed in a config's ``added_tokens_decoder``, checking their ids."""
        for key in sorted(added, key=int):
            spec = added[key]
            content = F.token_content(spec)
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
    def save_pretrained(
        self, save_directory: PathLike, legacy_format: bool | None = None, **kwargs: Any
    ) -> tuple[str, ...]:
        """Write the tokenizer files that this class and ``transformers`` both load.

        Files: ``vocab.json`` and ``merges.txt`` (the base vocabulary, byte-identical to
        OpenAI's for GPT-2), ``tokenizer.json`` (full pipeline with added tokens),
        ``tokenizer_config.json`` and ``special_tokens_map.json``. Files are overwritten
        in place (callers that need an atomic swap write into a temporary folder and
        rename it).

        Example:
            >>> import tempfile
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> d = tempfile.mkdtemp()
            >>> _ = GPT2Tokenizer().save_pretrained(d)
            >>> GPT2Tokenizer.from_pretrained(d).encode("Hello world")
            [15496, 995]
        """
        del legacy_format
        kwargs.pop("filename_prefix", None)
        if kwargs.pop("push_to_hub", False):
            raise ValueError(
                "save_pretrained(push_to_hub=True) is not supported for the tokenizer; "
                "save the folder, then upload it with the model's push_to_hub"
            )
        if kwargs:
            raise TypeError(f"save_pretrained got an unsupported argument {next(iter(kwargs))!r}")
        config: dict[str, Any] = {
            "tokenizer_class": "GPT2Tokenizer",
            "add_prefix_space": self._add_prefix_space,
            "add_bos_token": False,
            "add_eos_token": False,
            **{k: self._special[k] for k in SPECIAL_KEYS if self._special[k] is not None},
            "pad_token": self._special["pad_token"],
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "errors": "replace",
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "split_special_tokens": self._split_special_tokens,
            "trim_offsets": self._trim_offsets,
        }
        if self._additional_special:
            config["additional_special_tokens"] = list(self._additional_special)
        return F.write_folder(
            Path(save_directory), self._backend, config, self.special_tokens_map, self.chat_template
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_worker"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._backend.encode_special_tokens = self._split_special_tokens

    # ------------------------------------------------------------------ properties
    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, len={len(self)}, "
            f"pad_token={self.pad_token!r}, padding_side={self.padding_side!r}, "
            f"model_max_length={self.model_max_length}, add_prefix_space={self._add_prefix_space})"
        )

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (shared; never padded or truncated)."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without tokens added later (50257 for GPT-2)."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    @property
    def vocab(self) -> dict[str, int]:
        """Same as :meth:`get_vocab`."""
        return self.get_vocab()

    @property
    def add_prefix_space(self) -> bool:
        """Whether a space is put before the text (fixed at construction)."""
        return self._add_prefix_space

    @property
    def trim_offsets(self) -> bool:
        """Whether offsets leave out the spaces a token carries (fixed at construction)."""
        return self._trim_offsets

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
        self._backend.encode_special_tokens = value
        self._split_special_tokens = value

    def get_vocab(self) -> dict[str, int]:
        """Map of every token string (added ones included) to its id.

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> GPT2Tokenizer().get_vocab()["Ġworld"]
            995
        """
        return self._backend.get_vocab(with_added_tokens=True)


class GPT2TokenizerFast(GPT2Tokenizer):
    """gpt2kit's tokenizer with ``transformers.GPT2TokenizerFast``'s defaults.

    Same ids, masks, offsets, special-tokens mask and overflow rows as ``transformers``
    on the same files: ``pad_token`` is None unless the folder (or you) sets one,
    offsets include the space a token carries, ``max_length`` alone truncates, split
    words are encoded without added spaces, and a folder without ``model_max_length``
    has no limit. It loads and saves the same folders as :class:`GPT2Tokenizer`.

    Example:
        >>> from gpt2kit import GPT2TokenizerFast
        >>> tok = GPT2TokenizerFast.from_pretrained("gpt2")
        >>> tok.pad_token is None, tok("Hello world", return_offsets_mapping=True)["offset_mapping"]
        (True, [(0, 5), (5, 11)])
    """

    _default_pad = None
    _default_trim_offsets = False
    _max_length_truncates = True
    _space_split_words = False
    _default_model_max_length = F.VERY_LARGE_INTEGER


class AutoTokenizer:
    """``transformers.AutoTokenizer`` for GPT-2 tokenizers: returns a ``GPT2TokenizerFast``.

    Any byte-level BPE folder (``tokenizer.json`` or ``vocab.json`` + ``merges.txt``)
    loads; another kind of tokenizer is an error naming what it is.

    Example:
        >>> from gpt2kit import AutoTokenizer
        >>> type(AutoTokenizer.from_pretrained("gpt2")).__name__
        'GPT2TokenizerFast'
    """

    def __init__(self) -> None:
        raise OSError(
            "AutoTokenizer is not built directly; use AutoTokenizer.from_pretrained(name)"
        )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: PathLike, *args: Any, **kwargs: Any
    ) -> GPT2TokenizerFast:
        """Load with :meth:`GPT2TokenizerFast.from_pretrained` (same arguments)."""
        return GPT2TokenizerFast.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
