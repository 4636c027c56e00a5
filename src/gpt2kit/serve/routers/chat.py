"""`POST /v1/chat/completions`: OpenAI's chat API over the model's chat template.

The messages become one prompt through the template (`chat_template.py`), then run
exactly as a completion does; the answer is OpenAI's `chat.completion` shape (or
`chat.completion.chunk` events when streamed), with `logprobs.content` when asked.
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
from ..chat_template import render
from ..errors import APIError
from ..schemas import ChatCompletionRequest, ChatMessage
from ..state import ServerState, State
from ..streams import Run
from . import common

router = APIRouter()


def message_dicts(messages: list[ChatMessage], param: str = "messages") -> list[dict[str, Any]]:
    """Messages as the template sees them: `content` always a string."""
    out = []
    for i, m in enumerate(messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise APIError(
                        400,
                        f"{param}.{i}.content.{j}: only text parts are supported "
                        f"(got type {part.get('type')!r})",
                        param=f"{param}.{i}.content.{j}",
                    )
                texts.append(part["text"])
            content = "".join(texts)
        d = {**(m.model_extra or {}), "role": m.role, "content": content or ""}
        if m.name is not None:
            d["name"] = m.name
        out.append(d)
    return out


def chat_prompt(
    state: ServerState,
    messages: list[ChatMessage],
    *,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
    extra: dict[str, Any] | None = None,
) -> list[int]:
    """The prompt's token ids: the template rendered, then tokenized (in a worker thread)."""
    text = render(
        state.tokenizer,
        state.chat_template,
        message_dicts(messages),
        add_generation_prompt=add_generation_prompt and not continue_final_message,
        continue_final_message=continue_final_message,
        extra=extra,
    )
    ids = state.tokenizer.encode(text)
    if not ids:
        raise APIError(400, "messages: the template rendered an empty prompt", param="messages")
    if len(ids) > state.prompt_limit:
        raise APIError(
            400,
            f"messages: the prompt is {len(ids)} tokens, more than the {state.prompt_limit} "
            "allowed",
            param="messages",
            code="context_length_exceeded",
        )
    return ids


class ChatLogprobs:
    """OpenAI's chat `logprobs.content` entries."""

    def __init__(self, state: ServerState, k: int):
        self.text, self.k = common.TokenText(state.tokenizer), k

    def entry(self, tok: int, lp: float) -> dict[str, Any]:
        s = self.text(tok)
        return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}

    def content(self, infos: list[TokenInfo]) -> list[dict[str, Any]]:
        out = []
        for t in infos:
            e = self.entry(t.id, t.logprob)  # type: ignore[arg-type]
            e["top_logprobs"] = [self.entry(a, lp) for a, lp in t.top[: self.k]]
            out.append(e)
        return out


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, state: State) -> Any:
    state.need("completions")
    adapter = state.adapter_for(body.model)
    model_id = state.reported_name(body.model)
    if body.tools:
        raise APIError(400, "tools: tool calling is not supported by this server", param="tools")
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
    n = body.n or 1
    state.check_rows(n, "n")
    stops = common.stop_list(body.stop)
    bias = common.logit_bias(state, body.logit_bias)
    ids = await run_in_threadpool(
        chat_prompt,
        state,
        body.messages,
        add_generation_prompt=body.add_generation_prompt,
        continue_final_message=body.continue_final_message,
        extra=body.chat_template_kwargs,
    )
    constraint = await run_in_threadpool(common.grammar, state, body)
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    limit = (
        body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    )
    requested = common.token_budget(state, limit, [ids], param)
    k = (body.top_logprobs or 0) if body.logprobs else None
    lp = ChatLogprobs(state, k or 0)

    def params(index: int, prompt: list[int]) -> Any:
        return common.sampling(
            state,
            body,
            max_tokens=requested,
            ids=prompt,
            index=index,
            stops=stops,
            bias=bias,
            constraint=constraint,
            logprobs=k,
        )

    run = Run(state, [ids], n, params, adapter=adapter)
    rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prompt_tokens = len(ids) * n

    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(choices: list[dict], usage: dict | None = None) -> str:
            data: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_id,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        async def stream() -> AsyncIterator[str]:
            completion_tokens = 0
            for i in range(n):
                yield chunk(
                    [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
            async for index, ev in run.stream():
                if ev[0] == "text":
                    logprobs = {"content": lp.content(ev[2])} if k is not None else None
                    yield chunk(
                        [
                            {
                                "index": index,
                                "delta": {"content": ev[1]},
                                "logprobs": logprobs,
                                "finish_reason": None,
                            }
                        ]
                    )
                elif ev[0] == "done":
                    completion_tokens += ev[2]
                    yield chunk(
                        [{"index": index, "delta": {}, "logprobs": None, "finish_reason": ev[1]}]
                    )
                elif ev[0] == "error":
                    yield f"data: {json.dumps(ev[1].body())}\n\n"
                    return
            if include_usage:
                yield chunk(
                    [],
                    {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                )
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    results = await run.results()
    completion_tokens = sum(r.n_tokens for r in results)
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model_id,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": r.text},
                "logprobs": {"content": lp.content(r.tokens)} if k is not None else None,
                "finish_reason": r.finish,
            }
            for i, r in enumerate(results)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
