"""Structured output: JSON schema, JSON object, regex and Lark grammars via llguidance.

Why llguidance (over xgrammar and outlines-core): it computes each step's token mask
lazily from the grammar (an Earley parser over a lexer), so a new schema costs no
up-front compilation of per-state token tables; the request's grammar is ready in
milliseconds, which matters when every request may bring its own schema. One API covers
JSON schema, regex and Lark (context-free) grammars; grammar errors are returned, not
raised mid-decode; and it is the engine behind structured output in vLLM, SGLang and
llama.cpp, maintained by Microsoft. xgrammar's masks are as fast once compiled, but
compiling a schema takes longer and its fast mask application paths expect a GPU.

A `Grammar` is validated when the request arrives (400 naming `response_format` on a bad
schema), and each sequence gets its own `Matcher` in the worker thread.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import torch

from .errors import APIError

_tokenizers: dict[int, Any] = {}
_lock = threading.Lock()


def available() -> bool:
    try:
        import llguidance  # noqa: F401
    except ImportError:
        return False
    return True


def _ll_tokenizer(tokenizer: Any, vocab: int, eos: int | None) -> Any:
    """The llguidance tokenizer for `tokenizer` (built once per tokenizer: ~1 s)."""
    import llguidance

    with _lock:
        key = id(tokenizer)
        if key not in _tokenizers:
            backend = getattr(tokenizer, "backend_tokenizer", None)
            if backend is None:
                raise APIError(
                    400,
                    "response_format: structured output needs a tokenizer backed by the Rust "
                    "`tokenizers` library",
                    param="response_format",
                )
            _tokenizers[key] = (
                tokenizer,
                llguidance.LLTokenizer(backend.to_str(), n_vocab=vocab, eos_token=eos),
            )
        return _tokenizers[key][1]


class Grammar:
    """A compiled-on-demand grammar shared by the sequences of one request."""

    def __init__(self, grammar: str, ll_tokenizer: Any, vocab: int):
        self.grammar, self.ll_tokenizer, self.vocab = grammar, ll_tokenizer, vocab

    def matcher(self) -> Matcher:
        return Matcher(self)


class Matcher:
    """One sequence's grammar state: the mask of allowed next tokens, then the token taken."""

    def __init__(self, grammar: Grammar):
        import llguidance

        self.m = llguidance.LLMatcher(grammar.ll_tokenizer, grammar.grammar, log_level=0)
        self.vocab = grammar.vocab
        if self.m.is_error():
            raise ValueError(f"grammar: {self.m.get_error()}")

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """`scores [1, V]` (CPU) with every token the grammar forbids at -inf.

        In numpy on purpose: a 50k-element torch op on a busy machine can wait tens of
        milliseconds on its thread pool; numpy runs these two passes in ~0.1 ms.
        """
        bits = np.frombuffer(self.m.compute_bitmask(), dtype=np.uint8)
        v = scores.shape[-1]
        allowed = np.unpackbits(bits, bitorder="little").view(bool)
        if allowed.shape[0] < v:
            allowed = np.concatenate([allowed, np.zeros(v - allowed.shape[0], dtype=bool)])
        values = scores.detach().cpu().float().numpy()[0]
        out = np.where(allowed[:v], values, np.float32(-np.inf))  # stays float32
        return torch.from_numpy(out)[None]

    def consume(self, token: int) -> None:
        if not self.m.consume_token(token):
            raise ValueError(f"grammar: token {token} was not allowed: {self.m.get_error()}")

    def done(self) -> bool:
        """The grammar accepts nothing more (only EOS could follow)."""
        return self.m.is_stopped()


def grammar_for(
    response_format: dict[str, Any] | None,
    regex: str | None,
    grammar: str | None,
    *,
    tokenizer: Any,
    vocab: int,
    eos: int | None,
) -> Grammar | None:
    """The request's constraint from `response_format` / `regex` / `grammar` (at most one)."""
    import_needed = response_format is not None and response_format.get("type") != "text"
    given = [
        n
        for n, v in (("response_format", import_needed), ("regex", regex), ("grammar", grammar))
        if v
    ]
    if not given:
        return None
    if len(given) > 1:
        raise APIError(
            400, f"{given[1]}: give one of response_format, regex, grammar", param=given[1]
        )
    if not available():
        raise APIError(
            400,
            f"{given[0]}: structured output needs llguidance: pip install 'gpt2kit[serve]'",
            param=given[0],
        )
    import llguidance

    param = given[0]
    if regex:
        text = llguidance.LLMatcher.grammar_from_regex(regex)
    elif grammar:
        text = llguidance.LLMatcher.grammar_from_lark(grammar)
    else:
        assert response_format is not None
        kind = response_format.get("type")
        options = {"whitespace_flexible": False}
        if kind == "json_object":
            schema: Any = {"type": "object"}
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise APIError(
                    400,
                    "response_format.json_schema: must be {'name': ..., 'schema': {...}}",
                    param="response_format.json_schema",
                )
            schema = spec["schema"]
        else:
            raise APIError(
                400,
                f"response_format.type: {kind!r} is not one of 'text', 'json_object', "
                "'json_schema'",
                param="response_format.type",
            )
        try:
            text = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema), defaults=options
            )
        except ValueError as err:
            raise APIError(400, f"{param}: {err}", param=param) from err
    ll_tok = _ll_tokenizer(tokenizer, vocab, eos)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(text, ll_tok)
    if is_error:
        raise APIError(400, f"{param}: invalid: {messages[0]}", param=param, code="invalid_grammar")
    return Grammar(text, ll_tok, vocab)
