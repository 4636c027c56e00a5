"""gpt2kit's task endpoints: `/v1/classify`, `/v1/tag`, `/v1/answer`, `/v1/choose`,
`/v1/score`, `/v1/embed`; each answers `{"object": "list", "model", "data": [...]}`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ..errors import APIError
from ..schemas import (
    AnswerRequest,
    ChooseRequest,
    ClassifyRequest,
    EmbedRequest,
    ScoreRequest,
    TagRequest,
    TaskResponse,
)
from ..state import ServerState, State

router = APIRouter()


async def run_task(
    state: ServerState,
    task: str,
    items: list[dict],
    *,
    serves: str | None = None,
    model: str | None = None,
) -> TaskResponse:
    """Queue each item for the worker (batched with others of its task) and gather the results.

    `serves`: the endpoint task the model must serve (default: `task`). `model`: the
    request's `"model"`; an adapter's name is refused (tasks run the base model).
    """
    state.need(serves or task)
    state.base_only(model)
    state.check_rows(len(items), "input")
    fn = state.runner.function(task)
    futures = [state.submit(state.batcher.submit_task, task, it, fn) for it in items]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), state.timeout
        )
    except TimeoutError as err:
        for f in futures:
            f.cancel()
        raise state.timed_out() from err
    except ValueError as err:
        raise APIError(400, str(err), param="input") from err
    return TaskResponse(model=state.name, data=list(results))


def texts_of(state: ServerState, value: str | list[str]) -> list[dict]:
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise APIError(400, "input: must not be empty", param="input")
    state.check_rows(len(items), "input")
    for t in items:
        if len(state.tokenizer.encode(t)) > state.prompt_limit:
            raise APIError(
                400, f"input: a text is longer than {state.prompt_limit} tokens", param="input"
            )
    return [{"text": t} for t in items]


@router.post("/v1/classify")
async def classify(body: ClassifyRequest, state: State) -> TaskResponse:
    state.need("classify")
    out = await run_task(state, "classify", texts_of(state, body.input), model=body.model)
    if body.top_k:
        out.data = [d[: body.top_k] if isinstance(d, list) else d for d in out.data]
    return out


@router.post("/v1/tag")
async def tag(body: TagRequest, state: State) -> TaskResponse:
    state.need("tag")
    return await run_task(state, "tag", texts_of(state, body.input), model=body.model)


@router.post("/v1/answer")
async def answer(body: AnswerRequest, state: State) -> TaskResponse:
    state.need("answer")
    items = [body.input] if not isinstance(body.input, list) else body.input
    return await run_task(state, "answer", [it.model_dump() for it in items], model=body.model)


@router.post("/v1/choose")
async def choose(body: ChooseRequest, state: State) -> TaskResponse:
    state.need("choose")
    items = [body.input] if not isinstance(body.input, list) else body.input
    return await run_task(state, "choose", [it.model_dump() for it in items], model=body.model)


@router.post("/v1/score")
async def score(body: ScoreRequest, state: State) -> TaskResponse:
    state.need("score")
    return await run_task(state, "score", texts_of(state, body.input), model=body.model)


@router.post("/v1/embed")
async def embed(body: EmbedRequest, state: State) -> TaskResponse:
    state.need("embed")
    return await run_task(state, "embed", texts_of(state, body.input), model=body.model)
