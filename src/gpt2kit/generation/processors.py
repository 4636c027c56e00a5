"""Logits processors: each maps `(input_ids [N, L], scores [N, V]) -> scores [N, V]`.

Every class reproduces its `transformers` namesake (same arguments, same numbers), and
`build_processors` applies them in the order `transformers.generate` does, so greedy and
beam search pick the same tokens and sampling draws from the same distribution.
`input_ids` is the whole sequence so far (left padding included), as in `transformers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import native
from .config import GenerationConfig

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TemperatureLogitsWarper:
    """Divide the logits by `temperature` (< 1 sharper, > 1 flatter).

    Example:
        >>> TemperatureLogitsWarper(2.0)(None, torch.tensor([[2.0, 4.0]]))
        tensor([[1., 2.]])
    """

    def __init__(self, temperature: float):
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(
                f"temperature must be a float > 0, got {temperature!r}; for greedy decoding pass do_sample=False"
            )
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopKLogitsWarper:
    """Keep the `top_k` highest logits (ties with the k-th kept); `torch.topk`, no full sort.

    Example:
        >>> TopKLogitsWarper(2)(None, torch.tensor([[1.0, 3.0, 2.0]]))
        tensor([[-inf, 3., 2.]])
    """

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1, filter_value: float = -math.inf):
        if not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(
                f"top_k must be a positive int, got {top_k!r}; pass top_k=None to disable it"
            )
        self.top_k = max(top_k, min_tokens_to_keep)
        self.filter_value = filter_value
        # (output, values, index) of the last CPU call where exactly k scores survived
        self._survivors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, scores.shape[-1])
        self._survivors = None
        if scores.dim() != 2 or scores.device.type != "cpu":
            kth = torch.topk(scores, k)[0][..., -1:]
            return scores.masked_fill(scores < kth, self.filter_value)
        # (native selection and mask: torch.topk's values, masked_fill's result)
        values, index = native.topk_rows(scores, min(k + 1, scores.shape[-1]))
        kth = values[:, k - 1 : k]
        out = native.mask_below_rows(scores, kth, self.filter_value)
        if self.filter_value == -math.inf and (
            values.shape[1] == k or bool((values[:, k] < values[:, k - 1]).all())
        ):
            self._survivors = (out, values[:, :k], index[:, :k])
        return out

    def survivors(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(values, index)` of the k scores that survived the last call, where `scores` is
        that call's very output and exactly k survived (CPU only); else None. The draw
        (`sampling.sample`) takes them instead of selecting again."""
        kept = self._survivors
        return kept[1:] if kept is not None and kept[0] is scores else None


class TopPLogitsWarper:
    """Nucleus filtering: keep the smallest set of tokens whose probability reaches `top_p`.

    Example:
        >>> TopPLogitsWarper(0.5)(None, torch.tensor([[0.0, 0.0, 5.0]]))
        tensor([[-inf, -inf, 5.]])
    """

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1, filter_value: float = -math.inf):
        top_p = float(top_p)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}; 1.0 disables it")
        self.top_p, self.min_tokens_to_keep, self.filter_value = (
            top_p,
            min_tokens_to_keep,
            filter_value,
        )

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Ascending order: drop the low tail whose mass is at most 1 - top_p.
        remove = cumulative <= (1 - self.top_p)
        remove[..., -self.min_tokens_to_keep :] = False
        remove = remove.scatter(1, sorted_indices, remove)
        return scores.masked_fill(remove, self.filter_value)


class MinPLogitsWarper:
    """Keep tokens whose probability is at least `min_p` times the top token's.

    Example:
        >>> MinPLogitsWarper(0.5)(None, torch.tensor([[0.0, 0.1, 3.0]]))
        tensor([[-inf, -inf, 3.]])
    """

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1, filter_value: float = -math.inf):
        if not 0.0 <= float(min_p) <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p, self.min_tokens_to_keep, self.filter_value = (
            float(min_p),
            min_tokens_to_keep,
            filter_value,
        )

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        keep = torch.topk(probs, min(self.min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
        remove.scatter_(-1, keep, False)
        return scores.masked_fill(remove, self.filter_value)


class TypicalLogitsWarper:
    """Locally typical sampling: keep tokens whose surprisal is closest to the entropy.

    Example:
        >>> TypicalLogitsWarper(0.5)(None, torch.tensor([[0.0, 1.0, 2.0]])).isinf().sum().item()
        2
    """

    def __init__(
        self, mass: float = 0.9, min_tokens_to_keep: int = 1, filter_value: float = -math.inf
    ):
        mass = float(mass)
        if not 0.0 < mass < 1.0:
            raise ValueError(f"typical_p must be in (0, 1), got {mass}; 1.0 disables it")
        self.mass, self.min_tokens_to_keep, self.filter_value = (
            mass,
            min_tokens_to_keep,
            filter_value,
        )

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(scores, dim=-1)
        entropy = -(logp * logp.exp()).nansum(-1, keepdim=True)
        shifted = (-logp - entropy).abs()
        sorted_scores, sorted_indices = torch.sort(shifted, descending=False)
        cumulative = scores.gather(-1, sorted_indices).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < self.mass).sum(dim=1).clamp_(max=sorted_scores.shape[-1] - 1)
        remove = sorted_scores > sorted_scores.gather(1, last.view(-1, 1))
        remove[..., : self.min_tokens_to_keep] = False
        remove = remove.scatter(1, sorted_indices, remove)
        return scores.masked_fill(remove, self.filter_value)


class RepetitionPenaltyLogitsProcessor:
    """Divide positive (multiply negative) logits of tokens already in the sequence by `penalty`.

    `prompt_ignore_length [N]` skips each row's first tokens (its left padding), as
    `transformers` does, so pads never count as repeated tokens.

    Example:
        >>> RepetitionPenaltyLogitsProcessor(2.0)(torch.tensor([[0, 1]]), torch.tensor([[2.0, -2.0, 2.0]]))
        tensor([[ 1., -4.,  2.]])
    """

    def __init__(self, penalty: float, prompt_ignore_length: torch.Tensor | int | None = None):
        if not (isinstance(penalty, (int, float)) and penalty > 0):
            raise ValueError(
                f"repetition_penalty must be a float > 0, got {penalty!r}; 1.0 disables it"
            )
        self.penalty = float(penalty)
        self.prompt_ignore_length = prompt_ignore_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        skip = self.prompt_ignore_length
        if isinstance(skip, int):
            input_ids = input_ids[:, skip:]
        elif isinstance(skip, torch.Tensor):
            # Ignored positions point at a spare column past the vocabulary.
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            input_ids = input_ids.masked_fill(positions[None, :] < skip[:, None], V)
        seen = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
        seen.scatter_(1, input_ids, True)
        penalized = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return torch.where(seen[:, :V], penalized, scores)


class NoRepeatNGramLogitsProcessor:
    """Ban every token that would complete an n-gram already in the sequence.

    Example:
        >>> ids = torch.tensor([[1, 2, 1]])
        >>> NoRepeatNGramLogitsProcessor(2)(ids, torch.zeros(1, 4))
        tensor([[0., 0., -inf, 0.]])
    """

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"no_repeat_ngram_size must be a positive int, got {ngram_size!r}")
        self.n = ngram_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        L = input_ids.shape[-1]
        if self.n > L:
            return scores
        # Only a window that starts with the current (n-1)-suffix can be completed next.
        prefix = input_ids[:, L + 1 - self.n :]
        windows = input_ids.unfold(1, self.n, 1)  # (N, L - n + 1, n)
        matches = (windows[..., :-1] == prefix[:, None]).all(dim=-1)
        V = scores.shape[-1]
        banned = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=V), V), True)
        return scores.masked_fill(banned[:, :V], -math.inf)


class NoBadWordsLogitsProcessor:
    """Never generate the token sequences in `bad_words_ids` (EOS alone is exempt).

    A one-token entry is always banned; a longer one bans its last token when the
    sequence ends with the rest.

    Example:
        >>> p = NoBadWordsLogitsProcessor([[3], [1, 2]])
        >>> p(torch.tensor([[0, 1]]), torch.zeros(1, 4))
        tensor([[0., 0., -inf, -inf]])
    """

    def __init__(
        self,
        bad_words_ids: Sequence[Sequence[int]],
        eos_token_id: int | Sequence[int] | None = None,
    ):
        if (
            not isinstance(bad_words_ids, (list, tuple))
            or not bad_words_ids
            or any(
                not isinstance(seq, (list, tuple))
                or not seq
                or any(not isinstance(t, int) or t < 0 for t in seq)
                for seq in bad_words_ids
            )
        ):
            raise ValueError(
                f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {bad_words_ids!r}"
            )
        eos = (
            []
            if eos_token_id is None
            else [eos_token_id]
            if isinstance(eos_token_id, int)
            else list(eos_token_id)
        )
        self.sequences = [list(s) for s in bad_words_ids if not (len(s) == 1 and s[0] in eos)]
        self._prepared: tuple | None = None

    def _prepare(self, scores: torch.Tensor) -> tuple:
        V = scores.shape[-1]
        too_big = [t for s in self.sequences for t in s if t >= V]
        if too_big:
            raise ValueError(f"bad_words_ids hold ids outside the vocabulary of {V}: {too_big}")
        single = torch.zeros(V, dtype=torch.bool, device=scores.device)
        single[[s[0] for s in self.sequences if len(s) == 1]] = True
        groups: dict[int, list[list[int]]] = {}
        for s in self.sequences:
            if len(s) > 1:
                groups.setdefault(len(s) - 1, []).append(s)
        multi = [
            (
                torch.tensor([s[:-1] for s in g], device=scores.device),
                torch.tensor([s[-1] for s in g], device=scores.device),
            )
            for g in groups.values()
        ]
        return single, multi

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._prepared is None:
            self._prepared = self._prepare(scores)
        single, multi = self._prepared
        banned = single[None].expand_as(scores)
        if multi:
            # Several words may share a last token: count hits per token, ban where any.
            hits = torch.zeros_like(scores)
            for prefixes, last in multi:
                n = prefixes.shape[1]
                if n <= input_ids.shape[1]:
                    hit = (input_ids[:, None, -n:] == prefixes).all(dim=-1)  # (N, words)
                    hits.index_add_(1, last, hit.to(hits.dtype))
            banned = banned | (hits > 0)
        return scores.masked_fill(banned, -math.inf)


class MinNewTokensLogitsProcessor:
    """Forbid EOS until `min_new_tokens` tokens follow the prompt (`prompt_length` tokens).

    Example:
        >>> p = MinNewTokensLogitsProcessor(prompt_length=2, min_new_tokens=1, eos_token_id=0)
        >>> p(torch.tensor([[5, 6]]), torch.zeros(1, 3))
        tensor([[-inf, 0., 0.]])
    """

    def __init__(self, prompt_length: int, min_new_tokens: int, eos_token_id: int | Sequence[int]):
        if not isinstance(min_new_tokens, int) or min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be an int >= 0, got {min_new_tokens!r}")
        self.prompt_length, self.min_new_tokens = prompt_length, min_new_tokens
        self.eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self._index: tuple[int, int | list[int]] | None = None  # (vocab size, eos index)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] - self.prompt_length < self.min_new_tokens:
            vocab = scores.shape[-1]
            if self._index is None or self._index[0] != vocab:  # (once: this runs per token)
                # Ids past the vocabulary (a default EOS on a toy model) are never produced.
                eos = [t for t in self.eos if 0 <= t < vocab]
                # One id: a column fill. A list index is copied host-to-device every step.
                self._index = (vocab, eos[0] if len(eos) == 1 else eos)
            scores = scores.clone()
            scores[:, self._index[1]] = -math.inf
        return scores


class MinLengthLogitsProcessor(MinNewTokensLogitsProcessor):
    """Forbid EOS while the whole sequence (prompt included) is shorter than `min_length`."""

    def __init__(self, min_length: int, eos_token_id: int | Sequence[int]):
        super().__init__(0, min_length, eos_token_id)


class LogitNormalization:
    """Log-softmax the final scores (`renormalize_logits=True`)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.log_softmax(dim=-1)


class SuppressTokensLogitsProcessor:
    """Never generate `suppress_tokens` (their scores are `-inf` at every step).

    Example:
        >>> SuppressTokensLogitsProcessor([1])(None, torch.zeros(1, 3))
        tensor([[0., -inf, 0.]])
    """

    def __init__(self, suppress_tokens: Sequence[int]):
        self.tokens = [int(t) for t in suppress_tokens]
        self._mask: torch.Tensor | None = None

    def _vocab_mask(self, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        if self._mask is None or self._mask.shape[0] != V or self._mask.device != scores.device:
            mask = torch.zeros(V, dtype=torch.bool, device=scores.device)
            # Ids past the vocabulary are never produced (as `torch.isin` in `transformers`).
            mask[[t for t in self.tokens if t < V]] = True
            self._mask = mask
        return self._mask

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(self._vocab_mask(scores), -math.inf)


class SuppressTokensAtBeginLogitsProcessor(SuppressTokensLogitsProcessor):
    """Suppress `begin_suppress_tokens` at the first new token only (sequence length
    `begin_index`: the prompt's width, as `transformers` counts it).

    Example:
        >>> p = SuppressTokensAtBeginLogitsProcessor([0], begin_index=2)
        >>> p(torch.tensor([[5, 6]]), torch.zeros(1, 2)), p(torch.tensor([[5, 6, 1]]), torch.zeros(1, 2))
        (tensor([[-inf, 0.]]), tensor([[0., 0.]]))
    """

    def __init__(self, begin_suppress_tokens: Sequence[int], begin_index: int):
        super().__init__(begin_suppress_tokens)
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] != self.begin_index:
            return scores
        return super().__call__(input_ids, scores)


class ForcedBOSTokenLogitsProcessor:
    """Force `bos_token_id` as the token that follows a one-token sequence (`transformers`'
    rule: it only fires when the sequence so far has length 1).

    Example:
        >>> ForcedBOSTokenLogitsProcessor(1)(torch.tensor([[0]]), torch.zeros(1, 3))
        tensor([[-inf, 0., -inf]])
    """

    def __init__(self, bos_token_id: int):
        self.bos_token_id = int(bos_token_id)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] != 1:
            return scores
        out = torch.full_like(scores, -math.inf)
        out[:, self.bos_token_id] = 0
        return out


class ForcedEOSTokenLogitsProcessor:
    """Force an EOS id as the last token when the sequence reaches `max_length - 1`.

    Example:
        >>> ForcedEOSTokenLogitsProcessor(3, 0)(torch.tensor([[5, 6]]), torch.zeros(1, 2))
        tensor([[0., -inf]])
    """

    def __init__(self, max_length: int, eos_token_id: int | Sequence[int]):
        self.max_length = max_length
        self.eos = (
            [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(t) for t in eos_token_id]
        )

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] != self.max_length - 1:
            return scores
        out = torch.full_like(scores, -math.inf)
        out[:, self.eos] = 0
        return out


class PrefixConstrainedLogitsProcessor:
    """Only the tokens `prefix_allowed_tokens_fn(batch_id, sent)` returns may come next.

    `sent` is the row's ids so far (`[L]`), `batch_id` the prompt's index; `num_beams`
    rows belong to each prompt, as in `transformers`. When every row of a prompt has all
    its allowed tokens at `-inf`, they get score 0, so the constraint still holds.
    """

    def __init__(
        self, prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]], num_beams: int
    ):
        self.fn = prefix_allowed_tokens_fn
        self.num_beams = num_beams

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(scores, -math.inf)
        nb = self.num_beams
        batch = input_ids.shape[0] // nb
        for b in range(batch):
            for k in range(nb):
                allowed = self.fn(b, input_ids[b * nb + k])
                if len(allowed) == 0:
                    raise ValueError(
                        f"prefix_allowed_tokens_fn returned no token for batch id {b}: the "
                        "constraint cannot be met; return at least one allowed token id"
                    )
                mask[b * nb + k, allowed] = 0
        out = scores + mask
        stuck = out.amax(dim=-1).isneginf().view(batch, -1).all(dim=-1, keepdim=True)
        return torch.where(stuck.repeat_interleave(nb, dim=0), mask, out)


def _bias_items(sequence_bias: Any) -> list[tuple[tuple[int, ...], float]]:
    """`sequence_bias` (a dict of id tuples, or `[[ids], bias]` pairs) as checked pairs."""
    items = (
        list(sequence_bias.items())
        if isinstance(sequence_bias, dict)
        else [
            tuple(x) if isinstance(x, (list, tuple)) and len(x) == 2 else (x, None)
            for x in sequence_bias
        ]
        if isinstance(sequence_bias, (list, tuple))
        else None
    )
    ok = bool(items) and all(
        isinstance(k, (list, tuple))
        and len(k) > 0
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in k)
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        for k, v in items  # type: ignore[union-attr]
    )
    if not ok:
        raise ValueError(
            "sequence_bias must be a non-empty dict {(token ids...): bias} or a list of "
            f"[[token ids], bias] pairs, got {sequence_bias!r}"
        )
    return [(tuple(int(t) for t in k), float(v)) for k, v in items]  # type: ignore[union-attr]


class SequenceBiasLogitsProcessor:
    """Add a bias to the last token of a sequence when the ids so far end with the rest
    (a one-token sequence is always biased). `transformers`' namesake, same arithmetic.

    Example:
        >>> p = SequenceBiasLogitsProcessor({(2,): -1.0, (0, 1): 5.0})
        >>> p(torch.tensor([[3, 0]]), torch.zeros(1, 3))
        tensor([[ 0.,  5., -1.]])
    """

    def __init__(self, sequence_bias: Any):
        self.items = _bias_items(sequence_bias)
        self._prepared: tuple | None = None

    def _prepare(self, scores: torch.Tensor) -> tuple:
        V = scores.shape[-1]
        too_big = [t for k, _ in self.items for t in k if t >= V]
        if too_big:
            raise ValueError(f"sequence_bias holds ids outside the vocabulary of {V}: {too_big}")
        single = torch.zeros(V, dtype=torch.float, device=scores.device)
        ones = [(k[0], v) for k, v in self.items if len(k) == 1]
        if ones:
            single[[t for t, _ in ones]] = torch.tensor([v for _, v in ones], device=scores.device)
        groups: dict[int, list[tuple[tuple[int, ...], float]]] = {}
        for k, v in self.items:
            if len(k) > 1:
                groups.setdefault(len(k) - 1, []).append((k, v))
        multi = [
            (
                torch.tensor([k[:-1] for k, _ in g], device=scores.device),
                torch.tensor([k[-1] for k, _ in g], device=scores.device),
                torch.tensor([v for _, v in g], dtype=torch.float, device=scores.device),
            )
            for g in groups.values()
        ]
        return single, multi

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._prepared is None:
            self._prepared = self._prepare(scores)
        single, multi = self._prepared
        bias = torch.zeros_like(scores)
        bias += single
        for prefixes, last, values in multi:
            n = prefixes.shape[1]
            if n > input_ids.shape[1]:
                continue
            hit = (input_ids[:, None, -n:] == prefixes).all(dim=-1)
            bias.index_add_(1, last, torch.where(hit, values, 0.0).to(bias.dtype))
        return scores + bias


def build_processors(
    cfg: GenerationConfig,
    *,
    prompt_length: int,
    eos_token_ids: list[int],
    pad_lengths: torch.Tensor | None = None,
    num_beams: int = 1,
    extra: Sequence[LogitsProcessor] = (),
    max_length: int | None = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    rows_per_prompt: int | None = None,
) -> list[LogitsProcessor]:
    """The processors `cfg` asks for, in `transformers.generate`'s order.

    Sequence bias, penalties and constraints first (`max_length` for a forced EOS,
    `rows_per_prompt` for `prefix_allowed_tokens_fn`: the rows decoded per prompt), then
    user `extra` processors, then (sampling only) the warpers temperature, top-k, top-p,
    min-p, typical-p.

    Example:
        >>> ps = build_processors(GenerationConfig(do_sample=True, top_k=5), prompt_length=3, eos_token_ids=[0])
        >>> [type(p).__name__ for p in ps]
        ['TopKLogitsWarper']
    """
    out: list[LogitsProcessor] = []
    if cfg.sequence_bias is not None:
        out.append(SequenceBiasLogitsProcessor(cfg.sequence_bias))
    if cfg.repetition_penalty is not None and cfg.repetition_penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty, pad_lengths))
    if cfg.no_repeat_ngram_size:
        out.append(NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
    if cfg.bad_words_ids is not None:
        out.append(NoBadWordsLogitsProcessor(cfg.bad_words_ids, eos_token_ids))
    if eos_token_ids and cfg.min_length and cfg.min_length > 0:
        out.append(MinLengthLogitsProcessor(cfg.min_length, eos_token_ids))
    if eos_token_ids and cfg.min_new_tokens and cfg.min_new_tokens > 0:
        out.append(MinNewTokensLogitsProcessor(prompt_length, cfg.min_new_tokens, eos_token_ids))
    if prefix_allowed_tokens_fn is not None:
        n = rows_per_prompt or max(num_beams, cfg.num_return_sequences)
        out.append(PrefixConstrainedLogitsProcessor(prefix_allowed_tokens_fn, n))
    if cfg.forced_bos_token_id is not None:
        out.append(ForcedBOSTokenLogitsProcessor(cfg.forced_bos_token_id))
    if cfg.forced_eos_token_id is not None:
        length = max_length if max_length is not None else cfg.max_length
        if length is None:
            raise ValueError(
                "forced_eos_token_id needs the generation's total length: pass max_length= "
                "(or call through generate, which derives it)"
            )
        out.append(ForcedEOSTokenLogitsProcessor(length, cfg.forced_eos_token_id))
    if cfg.suppress_tokens is not None:
        out.append(SuppressTokensLogitsProcessor(cfg.suppress_tokens))
    if cfg.begin_suppress_tokens is not None:
        begin = (
            prompt_length
            if (prompt_length > 1 or cfg.forced_bos_token_id is None)
            else prompt_length + 1
        )
        out.append(SuppressTokensAtBeginLogitsProcessor(cfg.begin_suppress_tokens, begin))
    built_in = len(out)
    for p in extra:
        # A user processor of a built-in's type takes its place (`transformers`' merge rule).
        same = next((i for i, q in enumerate(out[:built_in]) if type(q) is type(p)), None)
        if same is None:
            out.append(p)
        else:
            out[same] = p
    if cfg.do_sample:
        # Beam sampling keeps room for every EOS plus one token to continue with.
        keep = max(2, len(eos_token_ids) + 1) if num_beams > 1 else 1
        if cfg.temperature is not None and cfg.temperature != 1.0:
            out.append(TemperatureLogitsWarper(cfg.temperature))
        if cfg.top_k is not None and cfg.top_k != 0:
            out.append(TopKLogitsWarper(cfg.top_k, keep))
        if cfg.top_p is not None and cfg.top_p < 1.0:
            out.append(TopPLogitsWarper(cfg.top_p, keep))
        if cfg.min_p is not None:
            out.append(MinPLogitsWarper(cfg.min_p, keep))
        if cfg.typical_p is not None and cfg.typical_p < 1.0:
            out.append(TypicalLogitsWarper(cfg.typical_p, keep))
    if cfg.renormalize_logits:
        out.append(LogitNormalization())
    return out


def apply_processors(
    processors: Sequence[LogitsProcessor], input_ids: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    """Run `processors` in order."""
    for p in processors:
        scores = p(input_ids, scores)
    return scores
