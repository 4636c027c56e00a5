"""`/healthz`, `/metrics`, `/v1/models` and the playground page."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse

from ..metrics import prometheus, snapshot
from ..schemas import ModelCard, ModelList
from ..state import State

router = APIRouter()


@router.get("/healthz")
async def healthz(state: State) -> dict[str, Any]:
    return {
        "status": "ok",
        "model": state.name,
        "tasks": state.tasks,
        "running": state.batcher.running,
        "queue_depth": state.batcher.queue_depth,
    }


@router.get("/metrics")
async def metrics_endpoint(state: State, format: str = "prometheus") -> Any:
    data = snapshot(state.batcher, state.metrics)
    if format == "json":
        return data
    return PlainTextResponse(prometheus(data), media_type="text/plain; version=0.0.4")


@router.get("/v1/models")
async def models(state: State) -> ModelList:
    created = int(state.metrics.started)
    # the base model, then one card per LoRA adapter (`--adapter NAME=PATH`): a request's
    # "model" picks one; adapters serve generation only
    cards = [ModelCard(id=state.name, created=created, tasks=state.tasks)]
    generating = [t for t in state.tasks if t in ("completions", "chat")]
    cards += [ModelCard(id=a, created=created, tasks=generating) for a in state.adapters]
    return ModelList(data=cards)


@router.get("/", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    page = resources.files("gpt2kit.serve").joinpath("playground.html").read_text(encoding="utf-8")
    return HTMLResponse(page)
