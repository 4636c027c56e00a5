"""What the generating endpoints (completions, chat) check and build the same way."""

from __future__ import annotations

from typing import Any

from ...generation.streaming import IncrementalDecoder
from ..batching import SamplingParams, TokenInfo
from ..constrained import Grammar, grammar_for
from ..errors import APIError
from ..schemas import SEED_MAX
from ..state import ServerState


def stop_list(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise APIError(400, "stop: up to 4 non-empty strings", param="stop")
    return stops


def token_budget(
    state: ServerState, max_tokens: int | None, prompts: list[list[int]], param: str
) -> int:
    """`max_tokens` checked against the cap and the context (None: the cap)."""
    if max_tokens is not None and max_tokens > state.max_tokens_cap:
        raise APIError(
            400,
            f"{param}: {max_tokens} is more than the {state.max_tokens_cap} allowed",
            param=param,
        )
    requested = max_tokens if max_tokens is not None else state.max_tokens_cap
    longest = max(len(p) for p in prompts)
    if max_tokens is not None and longest + requested > state.n_positions:
        raise APIError(
            400,
            f"{param}: prompt ({longest} tokens) + {param} ({requested}) exceeds "
            f"the model's context of {state.n_positions}",
            param=param,
            code="context_length_exceeded",
        )
    return requested


def logit_bias(state: ServerState, bias: dict[str, float] | None) -> dict[int, float] | None:
    if not bias:
        return None
    out = {}
    for key, value in bias.items():
        tok = int(key)
        if not 0 <= tok < state.vocab:
            raise APIError(
                400,
                f"logit_bias: token id {tok} is outside the vocabulary [0, {state.vocab})",
                param="logit_bias",
            )
        out[tok] = float(value)
    return out


def grammar(state: ServerState, body: Any) -> Grammar | None:
    """The request's structured-output constraint (built in a worker thread: ~ms)."""
    return grammar_for(
        body.response_format,
        body.regex,
        body.grammar,
        tokenizer=state.tokenizer,
        vocab=state.vocab,
        eos=state.batcher.eos,
    )


def sampling(
    state: ServerState,
    body: Any,
    *,
    max_tokens: int,
    ids: list[int],
    index: int,
    stops: list[str],
    bias: dict[int, float] | None,
    constraint: Grammar | None,
    logprobs: int | None = None,
    prompt_logprobs: int | None = None,
) -> SamplingParams:
    """The `SamplingParams` of choice `index` (seeded choices use `seed + index`)."""
    return SamplingParams(
        max_tokens=min(max_tokens, state.n_positions - len(ids)),
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k,
        seed=None if body.seed is None else (body.seed + index) % (SEED_MAX + 1),
        stop=stops,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=body.repetition_penalty,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        logit_bias=bias,
        grammar=constraint,
    )


class TokenText:
    """Token strings for logprobs: each token decoded alone (as OpenAI and vLLM do)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, tok: int) -> str:
        s = self.cache.get(tok)
        if s is None:
            s = self.cache[tok] = self.tokenizer.decode([tok])
        return s

    def top(self, info: TokenInfo) -> dict[str, float]:
        """The alternatives and the chosen token, as `{token text: logprob}`."""
        out: dict[str, float] = {}
        for t, lp in [*info.top, (info.id, info.logprob)]:
            key = self(t)
            if lp is not None and (key not in out or out[key] < lp):
                out[key] = lp
        return out


def prompt_text_and_offsets(tokenizer: Any, ids: list[int]) -> tuple[str, list[int]]:
    """The prompt's text and where each of its tokens starts in it."""
    dec = IncrementalDecoder(tokenizer)
    text, offsets = "", []
    for t in ids:
        offsets.append(len(text))
        text += dec.push(t)
    return text + dec.flush(), offsets
