"""Streaming: hand out text as it is generated, whole characters only.

GPT-2's byte-level BPE can end a token in the middle of a UTF-8 character (an emoji or
a CJK character often spans two or three tokens). Decoding such a token alone gives
U+FFFD, so pending tokens are decoded together and text is released only when it does
not end in U+FFFD; the held-back tokens are decoded again with the next ones. (A text
that really ends in U+FFFD is released at the end of the stream.)

Three ways in:
- `stream_generate(model, tokenizer, prompt, **kw)`: an iterator of text pieces, no
  thread (the decoding loop itself is a generator); for a CLI or an HTTP server.
- `TextStreamer(tokenizer, callback=...)`: pass as `generate(..., streamer=...)`.
- `TextIteratorStreamer(tokenizer)`: a queue to read from another thread while
  `generate` runs (the `transformers` pattern).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .inputs import as_list as _as_list
from .inputs import plan as _plan
from .inputs import resolve_config
from .processors import build_processors
from .sampling import decode_steps
from .search import build_criteria, build_decoder, generation_mode
from .setup import DecodeSetup
from .stopping import StopStringMatcher

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Turns token ids into text pieces that never end inside a character.

    Example:
        >>> class Bytes:  # a toy tokenizer whose tokens are single bytes
        ...     def decode(self, ids, **kw):
        ...         return bytes(ids).decode("utf-8", errors="replace")
        >>> d = IncrementalDecoder(Bytes())
        >>> [d.push(b) for b in "é!".encode()]
        ['', 'é', '!']
    """

    def __init__(self, tokenizer: Any, skip_ids: set[int] | None = None):
        self.tokenizer = tokenizer
        self.skip_ids = skip_ids or set()
        self.pending: list[int] = []

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ('' while a character is incomplete)."""
        if token_id in self.skip_ids:
            return ""
        self.pending.append(int(token_id))
        text = self.tokenizer.decode(self.pending)
        if text.endswith(REPLACEMENT):
            return ""
        self.pending = []
        return text

    def flush(self) -> str:
        """Whatever is still pending (at the end of the stream)."""
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        self.pending = []
        return text


class TextStreamer:
    """A `generate(streamer=...)` target that calls `callback(text)` for each new piece.

    Args:
        tokenizer: anything with `decode(ids) -> str`.
        skip_prompt: do not stream the prompt (the first `put`).
        callback: called with each text piece; e.g. `lambda t: print(t, end="", flush=True)`
            in a CLI (library code never prints itself).
        skip_token_ids: ids never streamed (default: EOS, from `tokenizer.eos_token_id`).

    Example:
        >>> class Bytes:
        ...     def decode(self, ids, **kw):
        ...         return bytes(ids).decode("utf-8", errors="replace")
        >>> pieces = []
        >>> s = TextStreamer(Bytes(), callback=pieces.append)
        >>> s.put(torch.tensor([[104]])); s.put(torch.tensor([105])); s.end()
        >>> pieces
        ['i']
    """

    def __init__(
        self,
        tokenizer: Any,
        skip_prompt: bool = True,
        callback: Callable[[str], Any] | None = None,
        skip_token_ids: set[int] | None = None,
    ):
        if skip_token_ids is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            skip_token_ids = set(_as_list(eos))
        self.decoder = IncrementalDecoder(tokenizer, skip_token_ids)
        self.skip_prompt = skip_prompt
        self.callback = callback
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1 and value.shape[0] != 1:
            raise ValueError("TextStreamer supports batch 1 only")
        if not self._seen_prompt:
            self._seen_prompt = True
            if self.skip_prompt:
                return
        for token in value.flatten().tolist():
            text = self.decoder.push(token)
            if text:
                self.on_text(text)

    def end(self) -> None:
        text = self.decoder.flush()
        if text:
            self.on_text(text)
        self.on_end()

    def on_text(self, text: str) -> None:
        if self.callback is not None:
            self.callback(text)

    def on_end(self) -> None:
        pass


class TextIteratorStreamer(TextStreamer):
    """`TextStreamer` whose pieces are read by iterating it (from another thread).

    Example:
        >>> import threading
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> class Bytes:
        ...     def decode(self, ids, **kw):
        ...         return bytes(ids).decode("utf-8", errors="replace")
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=128)).eval()
        >>> s = TextIteratorStreamer(Bytes())
        >>> t = threading.Thread(target=model.generate, args=(torch.tensor([[65]]),),
        ...                      kwargs=dict(max_new_tokens=3, streamer=s, eos_token_id=None))
        >>> t.start(); text = "".join(s); t.join()
        >>> isinstance(text, str)
        True
    """

    _END = object()

    def __init__(
        self, tokenizer: Any, skip_prompt: bool = True, timeout: float | None = None, **kwargs: Any
    ):
        super().__init__(tokenizer, skip_prompt, **kwargs)
        self.queue: queue.Queue = queue.Queue()
        self.timeout = timeout

    def on_text(self, text: str) -> None:
        self.queue.put(text)

    def on_end(self) -> None:
        self.queue.put(self._END)

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self.queue.get(timeout=self.timeout)
            if item is self._END:
                return
            yield item


def stream_generate(
    model: Any,
    tokenizer: Any,
    prompt: str | list[int] | torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    include_stop_string: bool = True,
    logits_processor: Sequence[Any] = (),
    **overrides: Any,
) -> Iterator[str]:
    """Generate from one prompt, yielding text pieces as they are decoded (no thread).

    Pieces are whole characters; their concatenation is the decoded continuation (EOS not
    included). With `stop_strings`, the text ends right after the first stop string (or
    right before it with `include_stop_string=False`; then a tail that may start a stop
    string is held back until it is known not to), even when the token that completed
    it runs past it. `logits_processor` as in `generate`. Closing the iterator (or breaking out of the loop) stops generation.

    Example:
        >>> from gpt2kit import GPT2Config, GPT2LMHeadModel
        >>> class Bytes:
        ...     def decode(self, ids, **kw):
        ...         return bytes(ids).decode("utf-8", errors="replace")
        ...     def encode(self, text):
        ...         return list(text.encode())
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=256)).eval()
        >>> text = "".join(stream_generate(model, Bytes(), "hi", max_new_tokens=5, eos_token_id=None))
        >>> isinstance(text, str)
        True
    """
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
        ids = (
            torch.tensor([ids], dtype=torch.long)
            if not isinstance(ids, torch.Tensor)
            else ids.view(1, -1)
        )
    else:
        ids = torch.as_tensor(prompt, dtype=torch.long).view(1, -1)
    cfg = resolve_config(model, overrides.pop("generation_config", None), overrides)
    if cfg.num_beams > 1 or cfg.num_return_sequences > 1:
        raise ValueError(
            "stream_generate streams one sequence: drop num_beams / num_return_sequences"
        )
    mode = generation_mode(cfg, None)
    if mode != "sample":
        raise ValueError(
            f"stream_generate runs greedy decoding or sampling, not {mode} decoding: drop "
            "penalty_alpha / prompt_lookup_num_tokens, or call generate"
        )
    plan = _plan(model, cfg, ids, None, seed, generator)
    inputs, generator, eos, pad, max_new = (
        plan.inputs,
        plan.generator,
        plan.eos,
        plan.pad,
        plan.max_new,
    )
    T = inputs.ids.shape[1]
    processors = build_processors(
        cfg, prompt_length=T, eos_token_ids=eos, extra=logits_processor, max_length=T + max_new
    )
    criteria = build_criteria(cfg, None)  # max_time
    stop = StopStringMatcher(cfg.stop_strings, tokenizer) if cfg.stop_strings else None
    decoder = IncrementalDecoder(tokenizer, set(eos))
    text = ""  # everything decoded so far
    sent = 0  # how much of it was yielded

    def release(final: bool) -> tuple[str, bool]:
        # What may be yielded now, and whether a stop string ended the text.
        nonlocal sent
        end, found = len(text), False
        if stop is not None:
            cut, found = stop.cut(text)
            if found:
                end = len(cut)
                if not include_stop_string:
                    end -= next(len(s) for s in stop.strings if cut.endswith(s))
            elif not include_stop_string and not final:
                # Hold back a tail that may be the start of a stop string.
                end -= stop.partial_suffix(text)
        piece = text[sent:end] if end > sent else ""
        sent = max(sent, end)
        return piece, found

    # The same step function as `generate` builds (static/compiled, or the CPU decoder).
    step_model = build_decoder(model, cfg, 1, T + max_new, {})
    setup = DecodeSetup(cfg, processors, eos, pad, max_new, stop, generator, criteria=criteria)
    steps = decode_steps(step_model, inputs.ids, None, setup)
    try:
        for token in steps:
            text += decoder.push(int(token[0]))
            piece, found = release(final=False)
            if piece:
                yield piece
            if found:
                return
        text += decoder.flush()
        piece, _ = release(final=True)
        if piece:
            yield piece
    finally:
        steps.close()
