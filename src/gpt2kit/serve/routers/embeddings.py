"""`POST /v1/embeddings` in OpenAI's shape: string, strings, token ids or id lists in;
one unit-length vector per input out (mean of the final hidden states), float or base64."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ..errors import APIError
from ..schemas import EmbeddingRequest
from ..state import ServerState, State
from .tasks import run_task

router = APIRouter()


def inputs_of(state: ServerState, value: Any) -> list[list[int]]:
    """Token ids of each input (in a worker thread: many strings take a while)."""
    if isinstance(value, str):
        raw: list[Any] = [value]
    elif value and all(isinstance(x, int) for x in value):
        raw = [value]
    else:
        raw = list(value)
    if not raw:
        raise APIError(400, "input: must not be empty", param="input")
    state.check_rows(len(raw), "input")
    out = []
    for i, item in enumerate(raw):
        ids = state.tokenizer.encode(item) if isinstance(item, str) else list(item)
        where = "input" if len(raw) == 1 else f"input.{i}"
        if not ids:
            raise APIError(400, f"{where}: an empty input has no embedding", param=where)
        if any(not 0 <= t < state.vocab for t in ids):
            raise APIError(400, f"{where}: token ids must be in [0, {state.vocab})", param=where)
        if len(ids) > state.n_positions:
            raise APIError(
                400,
                f"{where}: {len(ids)} tokens, more than the model's {state.n_positions}",
                param=where,
                code="context_length_exceeded",
            )
        out.append(ids)
    return out


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, state: State) -> dict[str, Any]:
    state.need("embed")
    state.base_only(body.model)
    width = int(state.model.config.n_embd)
    if body.dimensions is not None and body.dimensions != width:
        raise APIError(
            400,
            f"dimensions: this model's embeddings have {width} dimensions and cannot be "
            f"shortened (got {body.dimensions})",
            param="dimensions",
        )
    ids = await run_in_threadpool(inputs_of, state, body.input)
    out = await run_task(state, "embeddings", [{"ids": x} for x in ids], serves="embed")
    data = []
    for i, vec in enumerate(out.data):
        emb: Any = vec
        if body.encoding_format == "base64":
            emb = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(len(x) for x in ids)
    return {
        "object": "list",
        "model": state.name,
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
