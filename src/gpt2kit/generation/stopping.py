"""Stop strings: end a row once its text contains a stop string that its last token completed.

Semantics are `transformers`' `StopStringCriteria`: a row stops on the token that
completes a stop string, even when the string spans several tokens or the token runs
past it ("st" + "opped" stops on "stop"); the returned ids include that token. The
matching is done on bytes (GPT-2's byte-level tokens may end inside a UTF-8 character),
so a multi-byte stop string is found however the tokenizer split it. Text APIs
(`stream_generate`) additionally cut the text right after the stop string.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    # GPT-2's reversible byte <-> printable-unicode table (openai/gpt-2 encoder.py).
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class TokenBytes:
    """The raw bytes of each token id of a tokenizer (cached).

    Uses the byte-level token strings (`convert_ids_to_tokens`) when the tokenizer has
    them, so a token that is half of a UTF-8 character yields its real bytes; otherwise
    `decode([id])` encoded as UTF-8.

    Example:
        >>> class Toy:
        ...     def decode(self, ids):
        ...         return "".join(chr(97 + i) for i in ids)
        >>> TokenBytes(Toy())(2)
        b'c'
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[int, bytes] = {}
        self.byte_level = hasattr(tokenizer, "convert_ids_to_tokens")

    def __call__(self, token_id: int) -> bytes:
        b = self.cache.get(token_id)
        if b is None:
            b = self._compute(token_id)
            self.cache[token_id] = b
        return b

    def _compute(self, token_id: int) -> bytes:
        if self.byte_level:
            token = self.tokenizer.convert_ids_to_tokens(token_id)
            if isinstance(token, list):
                token = token[0]
            table = _byte_decoder()
            if isinstance(token, str) and token and all(c in table for c in token):
                return bytes(table[c] for c in token)
        return self.tokenizer.decode([token_id]).encode("utf-8")


class StopStringMatcher:
    """Tells whether a row's last token completed one of `stop_strings`.

    Example:
        >>> class Toy:
        ...     def decode(self, ids):
        ...         return "".join({1: "st", 2: "opped", 3: "x"}[i] for i in ids)
        >>> m = StopStringMatcher(["stop"], Toy())
        >>> m.hit([3, 1]), m.hit([3, 1, 2])
        (False, True)
    """

    def __init__(self, stop_strings: str | Sequence[str], tokenizer: Any):
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        if not stop_strings or any(not isinstance(s, str) or not s for s in stop_strings):
            raise ValueError(
                f"stop_strings must be a non-empty string or list of them, got {stop_strings!r}"
            )
        if tokenizer is None:
            raise ValueError(
                "stop_strings need the tokenizer to read the text: pass tokenizer=GPT2Tokenizer.from_pretrained(...)"
            )
        self.strings = list(stop_strings)
        self.stops = [s.encode("utf-8") for s in stop_strings]
        self.longest = max(len(s) for s in self.stops)
        self.token_bytes = TokenBytes(tokenizer)

    def hit(self, ids: Sequence[int]) -> bool:
        """True when the text of `ids` contains a stop string that overlaps its last token."""
        if not len(ids):
            return False
        last = self.token_bytes(int(ids[-1]))
        if not last:
            return False
        # Enough earlier tokens to hold any stop string that ends inside the last token.
        parts = [last]
        size = len(last)
        need = len(last) + self.longest - 1
        i = len(ids) - 2
        while size < need and i >= 0:
            b = self.token_bytes(int(ids[i]))
            parts.append(b)
            size += len(b)
            i -= 1
        window = b"".join(reversed(parts))
        last_start = len(window) - len(last)
        for stop in self.stops:
            # A match must end inside the last token: search only where it can.
            start = window.find(stop, max(0, last_start + 1 - len(stop)))
            if start != -1:
                return True
        return False

    def partial_suffix(self, text: str) -> int:
        """Length of the longest end of `text` that is the start of a stop string."""
        best = 0
        for s in self.strings:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def cut(self, text: str) -> tuple[str, bool]:
        """`text` up to and including the earliest-ending stop string, and whether one was found."""
        best = -1
        for s in self.strings:
            i = text.find(s)
            if i != -1 and (best == -1 or i + len(s) < best):
                best = i + len(s)
        return (text, False) if best == -1 else (text[:best], True)


class StoppingCriteria:
    """Base of `transformers`-style stopping criteria: `(input_ids [N, L], scores) -> [N] bool`.

    `scores` is the tuple of per-step scores when `output_scores` records them, else None
    (what `transformers` passes). A criterion may also return one bool for every row.
    Subclass it (or pass any such callable, `transformers`' own included).
    """

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class MaxTimeCriteria(StoppingCriteria):
    """Stop every row once `max_time` seconds passed since `initial_timestamp` (default:
    construction, i.e. just before the prompt is encoded, as in `transformers`)."""

    def __init__(self, max_time: float, initial_timestamp: float | None = None) -> None:
        self.max_time = float(max_time)
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = time.time() - self.initial_timestamp > self.max_time
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class StoppingCriteriaList(list):
    """Criteria applied together: a row is done when any criterion says so.

    Example:
        >>> import torch
        >>> stop = StoppingCriteriaList([lambda ids, scores: ids[:, -1] == 3])
        >>> stop(torch.tensor([[1, 3], [3, 1]]), None)
        tensor([ True, False])
    """

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n = input_ids.shape[0]
        done = torch.zeros(n, dtype=torch.bool, device=input_ids.device)
        for criterion in self:
            hit = criterion(input_ids, scores, **kwargs)
            hit = torch.as_tensor(hit, dtype=torch.bool, device=input_ids.device)
            if hit.dim() == 0:
                hit = hit.expand(n)
            if hit.shape != (n,):
                raise ValueError(
                    f"stopping criterion {criterion!r} returned shape {tuple(hit.shape)}; "
                    f"it must return one bool per row ([{n}]) or a single bool"
                )
            done = done | hit
        return done

    @property
    def row_free(self) -> bool:
        """True when no criterion can keep per-row state (rows may be dropped)."""
        return all(type(c) is MaxTimeCriteria for c in self)
