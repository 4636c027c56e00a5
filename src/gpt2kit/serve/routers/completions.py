"""`POST /v1/completions`: OpenAI's legacy completions, continuously batched, SSE streaming.

Beyond plain generation: `logprobs` (0-5 alternatives, the legacy shape), `echo` (the
prompt with its logprobs, the first null), `max_tokens: 0` with `echo` (score only; what
lm-evaluation-harness's `local-completions` sends), `best_of`, `logit_bias`, and
structured output (`response_format`, `regex`, `grammar`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..batching import TokenInfo
from ..errors import APIError
from ..schemas import (
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    LegacyLogprobs,
    Usage,
)
from ..state import ServerState, State
from ..streams import Result, Run
from . import common

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


def check_fields(body: CompletionRequest, n: int) -> int:
    """Refuse what cannot be honoured; return how many sequences each prompt runs."""
    if body.suffix:
        raise APIError(
            400, "suffix: GPT-2 has no infilling; send the text as the prompt", param="suffix"
        )
    best_of = body.best_of or n
    if best_of < n:
        raise APIError(400, f"best_of: must be >= n ({n}), got {best_of}", param="best_of")
    if best_of > n and body.stream:
        raise APIError(400, "best_of: cannot stream when best_of > n", param="best_of")
    if best_of > n and (body.temperature == 0):
        best_of = n  # greedy candidates are all the same sequence
    return best_of


class Legacy:
    """Builds OpenAI's legacy `logprobs` object of one choice."""

    def __init__(self, state: ServerState):
        self.text = common.TokenText(state.tokenizer)
        self.tokenizer = state.tokenizer

    def build(self, infos: list[TokenInfo], base: int, with_top: bool) -> LegacyLogprobs:
        return LegacyLogprobs(
            tokens=[self.text(t.id) for t in infos],
            token_logprobs=[t.logprob for t in infos],
            top_logprobs=[
                self.text.top(t) if with_top and t.logprob is not None else None for t in infos
            ],
            text_offset=[base + t.offset for t in infos],
        )

    def prompt(self, ids: list[int], infos: list[TokenInfo] | None) -> tuple[str, list[TokenInfo]]:
        text, offsets = common.prompt_text_and_offsets(self.tokenizer, ids)
        infos = infos or [TokenInfo(t, None, []) for t in ids]
        for info, off in zip(infos, offsets, strict=True):
            info.offset = off
        return text, infos


def pick_best(results: list[Result], n_prompts: int, best_of: int, n: int) -> list[Result]:
    """Per prompt, the `n` of `best_of` candidates with the highest mean token logprob."""
    out = []
    for i in range(n_prompts):
        group = results[i * best_of : (i + 1) * best_of]

        def score(r: Result) -> float:
            lps = [t.logprob for t in r.tokens if t.logprob is not None]
            return sum(lps) / len(lps) if lps else float("-inf")

        out.extend(sorted(group, key=score, reverse=True)[:n])
    return out


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, state: State) -> Any:
    state.need("completions")
    adapter = state.adapter_for(body.model)
    model_id = state.reported_name(body.model)
    n = body.n or 1
    best_of = check_fields(body, n)
    raw = raw_prompts(body)
    state.check_rows(len(raw) * best_of, "n" if best_of > 1 else "prompt")
    stops = common.stop_list(body.stop)
    bias = common.logit_bias(state, body.logit_bias)
    prompts = await run_in_threadpool(encode_prompts, state, raw)
    constraint = await run_in_threadpool(common.grammar, state, body)
    requested = common.token_budget(state, body.max_tokens, prompts, "max_tokens")
    want_lp = body.logprobs
    # best_of ranks candidates by their logprobs: compute them even if not returned.
    run_lp = want_lp if want_lp is not None else (0 if best_of > n else None)
    echo = bool(body.echo)
    prompt_lp = want_lp if (echo and want_lp is not None) else None

    def params(index: int, ids: list[int]) -> Any:
        return common.sampling(
            state,
            body,
            max_tokens=requested,
            ids=ids,
            index=index,
            stops=stops,
            bias=bias,
            constraint=constraint,
            logprobs=run_lp,
            prompt_logprobs=prompt_lp,
        )

    run = Run(state, prompts, best_of, params, adapter=adapter)
    rid = f"cmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prompt_tokens = sum(len(p) for p in prompts) * best_of
    legacy = Legacy(state)
    with_top = bool(want_lp)

    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        per_prompt = {k: prompts[k // best_of] for k in range(len(prompts) * best_of)}
        base: dict[int, int] = {}

        def chunk(choices: list[dict], usage: dict | None = None) -> str:
            data = {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model_id,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        def choice(index: int, text: str, lp: Any, finish: str | None) -> dict:
            return {
                "text": text,
                "index": index,
                "logprobs": lp.model_dump() if lp is not None else None,
                "finish_reason": finish,
            }

        async def stream() -> AsyncIterator[str]:
            completion_tokens = 0
            async for index, ev in run.stream():
                if ev[0] == "prompt" or (echo and index not in base and ev[0] == "text"):
                    if index not in base:
                        text, infos = legacy.prompt(
                            per_prompt[index], ev[1] if ev[0] == "prompt" else None
                        )
                        base[index] = len(text)
                        if echo:
                            lp = legacy.build(infos, 0, with_top) if want_lp is not None else None
                            yield chunk([choice(index, text, lp, None)])
                    if ev[0] == "prompt":
                        continue
                if ev[0] == "text":
                    lp = (
                        legacy.build(ev[2], base.get(index, 0) if echo else 0, with_top)
                        if want_lp is not None
                        else None
                    )
                    yield chunk([choice(index, ev[1], lp, None)])
                elif ev[0] == "done":
                    completion_tokens += ev[2]
                    yield chunk([choice(index, "", None, ev[1])])
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
    for k, r in enumerate(results):
        r.prompt_ids = prompts[k // best_of]
    if best_of > n:
        results = pick_best(results, len(prompts), best_of, n)
    choices = []
    for k, r in enumerate(results):
        text, lp = r.text, None
        if echo:
            ptext, pinfos = legacy.prompt(r.prompt_ids, r.prompt)
            text = ptext + r.text
            if want_lp is not None:
                lp = legacy.build(pinfos, 0, with_top)
                rest = legacy.build(r.tokens, len(ptext), with_top)
                for f in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                    getattr(lp, f).extend(getattr(rest, f))
        elif want_lp is not None:
            lp = legacy.build(r.tokens, 0, with_top)
        choices.append(CompletionChoice(text=text, index=k, logprobs=lp, finish_reason=r.finish))  # type: ignore[arg-type]
    return CompletionResponse(
        id=rid,
        created=created,
        model=model_id,
        choices=choices,
        usage=Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )
