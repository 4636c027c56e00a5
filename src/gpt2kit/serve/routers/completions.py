"""`POST /v1/completions`: OpenAI's legacy completions, continuously batched, SSE streaming."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..batching import SamplingParams
from ..errors import APIError
from ..schemas import SEED_MAX, CompletionChoice, CompletionRequest, CompletionResponse, Usage
from ..state import ServerState, State
from ..streams import Run

router = APIRouter()


def raw_prompts(body: CompletionRequest) -> list[Any]:
    """The request's prompts as a list (one string, one id list, or a list of either)."""
    p = body.prompt
    if isinstance(p, str) or (p and all(isinstance(x, int) for x in p)):
        raw: list[Any] = [p]
    else:
        raw = list(p)
    if not raw:
        raise APIError(400, "prompt: must not be an empty list", param="prompt")
    return raw


def encode_prompts(state: ServerState, raw: list[Any]) -> list[list[int]]:
    """Token ids of each prompt, checked against the vocabulary and the prompt limit.

    Runs in a worker thread: tokenizing thousands of prompts must not stall the event loop.
    """
    out = []
    vocab, eos = state.vocab, state.batcher.eos
    for item in raw:
        ids = state.tokenizer.encode(item) if isinstance(item, str) else [int(t) for t in item]
        if any(t < 0 or t >= vocab for t in ids):
            raise APIError(400, f"prompt: token ids must be in [0, {vocab})", param="prompt")
        ids = ids or [eos if eos is not None else 0]
        if len(ids) > state.prompt_limit:
            raise APIError(
                400,
                f"prompt: {len(ids)} tokens, more than the {state.prompt_limit} allowed",
                param="prompt",
                code="context_length_exceeded",
            )
        out.append(ids)
    return out


def check_unsupported(body: CompletionRequest) -> None:
    if body.logprobs:
        raise APIError(400, "logprobs: not supported by this server", param="logprobs")
    if body.echo:
        raise APIError(400, "echo: not supported by this server", param="echo")
    if body.suffix:
        raise APIError(400, "suffix: not supported by this server", param="suffix")
    if body.best_of is not None and body.best_of != (body.n or 1):
        raise APIError(400, "best_of: only best_of == n is supported", param="best_of")


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


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, state: State) -> Any:
    state.need("completions")
    check_unsupported(body)
    raw = raw_prompts(body)
    n = body.n or 1
    state.check_rows(len(raw) * n, "n" if n > 1 else "prompt")
    stops = stop_list(body.stop)
    prompts = await run_in_threadpool(encode_prompts, state, raw)
    requested = token_budget(state, body.max_tokens, prompts, "max_tokens")

    def params(index: int, ids: list[int]) -> SamplingParams:
        return SamplingParams(
            max_tokens=min(requested, state.n_positions - len(ids)),
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=body.top_k,
            seed=None if body.seed is None else (body.seed + index) % (SEED_MAX + 1),
            stop=stops,
            presence_penalty=body.presence_penalty or 0.0,
            frequency_penalty=body.frequency_penalty or 0.0,
            repetition_penalty=body.repetition_penalty,
        )

    run = Run(state, prompts, n, params)
    rid = f"cmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prompt_tokens = sum(len(p) for p in prompts) * n

    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(choices: list[dict], usage: dict | None = None) -> str:
            data = {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": state.name,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        async def stream() -> AsyncIterator[str]:
            completion_tokens = 0
            async for index, ev in run.stream():
                if ev[0] == "text":
                    yield chunk(
                        [{"text": ev[1], "index": index, "logprobs": None, "finish_reason": None}]
                    )
                elif ev[0] == "done":
                    completion_tokens += ev[2]
                    yield chunk(
                        [{"text": "", "index": index, "logprobs": None, "finish_reason": ev[1]}]
                    )
                else:
                    yield f"data: {json.dumps(ev[1].body())}\n\n"
                    return
            if include_usage:
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                yield chunk([], usage)
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    results = await run.results()
    completion_tokens = sum(r.n_tokens for r in results)
    return CompletionResponse(
        id=rid,
        created=created,
        model=state.name,
        choices=[
            CompletionChoice(text=r.text, index=k, finish_reason=r.finish)  # type: ignore[arg-type]
            for k, r in enumerate(results)
        ],
        usage=Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )
