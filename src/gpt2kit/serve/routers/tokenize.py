"""`POST /tokenize` and `POST /detokenize` (vLLM's shapes): the server's own tokenizer,
so a client counts tokens, and checks prompts against `max_model_len`, exactly as the
server will; a chat's `messages` are tokenized through the chat template."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ..errors import APIError
from ..schemas import DetokenizeRequest, TokenizeRequest
from ..state import State
from .chat import chat_prompt

router = APIRouter()


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, state: State) -> dict[str, Any]:
    if (body.prompt is None) == (body.messages is None):
        raise APIError(400, "prompt: give exactly one of prompt or messages", param="prompt")
    if body.messages is not None:
        ids = await run_in_threadpool(
            chat_prompt, state, body.messages, add_generation_prompt=body.add_generation_prompt
        )
    else:
        ids = await run_in_threadpool(state.tokenizer.encode, body.prompt)
    out: dict[str, Any] = {"count": len(ids), "max_model_len": state.n_positions, "tokens": ids}
    if body.return_token_strs:
        out["token_strs"] = state.tokenizer.convert_ids_to_tokens(ids)
    return out


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, state: State) -> dict[str, Any]:
    bad = [t for t in body.tokens if not 0 <= t < state.vocab]
    if bad:
        raise APIError(
            400, f"tokens: ids must be in [0, {state.vocab}), got {bad[0]}", param="tokens"
        )
    return {"prompt": state.tokenizer.decode(body.tokens)}
